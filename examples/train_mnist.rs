//! The book's network, as in *Deep Learning with Python*, chapter 2:
//! `Dense(512, relu)`, `Dense(10, softmax)`, RMSprop, 5 epochs of batch 128.
//!
//! `cargo run --release --example train_mnist -- [MNIST_DIR]`

use std::sync::Arc;

use gpu_mnist::data::MNIST;
use gpu_mnist::{Activation, Device, Init, ModelSpec, Params, Split, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let data = Arc::new(MNIST.load(dir.as_deref(), Some(&mut |_| {}))?);
    let model = ModelSpec::sequential([28 * 28])
        .dense(512, Activation::Relu)
        .dense(10, Activation::Softmax);
    let params = Params::init(&model, Init::Glorot, 1);
    let mut trainer = Trainer::new(&Device::Auto, &model, &params, data, TrainConfig::default())?;
    println!("{}\non {}", model, trainer.describe());
    for epoch in trainer.fit(5, &mut ())?.epochs {
        println!(
            "epoch {}: loss {:.4}, accuracy {:.4}",
            epoch.epoch, epoch.loss, epoch.accuracy
        );
    }
    let test = trainer.evaluate(Split::Test)?;
    println!("test_acc: {:.4}", test.accuracy());
    Ok(())
}
