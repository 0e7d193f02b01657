//! The book's convnet, as in *Deep Learning with Python*, chapter 5: three
//! 3x3 relu convolutions with two 2x2 max-pools, Flatten, `Dense(64, relu)`,
//! `Dense(10, softmax)`; RMSprop, categorical cross-entropy, 5 epochs of
//! batch 64. The images keep their 28 x 28 x 1 shape (channels-last).
//!
//! `cargo run --release --example convnet -- [MNIST_DIR]`

use std::sync::Arc;

use gpu_mnist::data::MNIST;
use gpu_mnist::{Device, Init, LossKind, ModelSpec, Params, Split, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let data = Arc::new(MNIST.load(dir.as_deref(), Some(&mut |_| {}))?);
    // The same as `ModelSpec::sequential([28, 28, 1]).conv2d(32, 3,
    // Activation::Relu).max_pool(2)...` layer by layer (see `ModelSpec`).
    let model = ModelSpec::convnet(28, 28, 10);
    let params = Params::init(&model, Init::Glorot, 1);
    let config = TrainConfig {
        batch_size: 64,
        loss: LossKind::Categorical,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&Device::Auto, &model, &params, data, config)?;
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
