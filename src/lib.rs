//! gpu-mnist: trains the MNIST multilayer perceptron of *Deep Learning with Python*
//! (chapter 2) on the GPU through wgpu compute shaders, with a CPU reference backend.

pub mod app;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod loss;
pub mod model;
pub mod optim;
pub mod train;
