//! A model of your own and your own loop: two hidden layers, Adam, one epoch
//! at a time, with an observer that prints the running loss, and the test
//! accuracy after each epoch.
//!
//! `cargo run --release --example custom_model -- [MNIST_DIR]`

use std::sync::Arc;

use gpu_mnist::data::MNIST;
use gpu_mnist::{
    Activation, Device, EpochRecord, Init, Metrics, ModelSpec, Observer, OptimizerKind,
    OptimizerSpec, Params, Split, TrainConfig, Trainer,
};

/// Prints the running loss every report and a line per epoch.
struct Printer;

impl Observer for Printer {
    fn progress(&mut self, epoch: usize, running: &Metrics) {
        println!(
            "  epoch {epoch}, step {}: loss {:.4}",
            running.steps,
            running.loss()
        );
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        println!("epoch {} took {:.2}s", record.epoch, record.seconds);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let data = Arc::new(MNIST.load(dir.as_deref(), Some(&mut |_| {}))?);
    let model = ModelSpec::sequential([28 * 28])
        .dense(256, Activation::Relu)
        .dense(128, Activation::Relu)
        .dense(10, Activation::Softmax);
    let config = TrainConfig {
        batch_size: 64,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Adam),
        report_every: 300,
        ..TrainConfig::default()
    };
    let params = Params::init(&model, Init::Glorot, 7);
    let mut trainer = Trainer::new(&Device::Auto, &model, &params, data, config)?;
    for _ in 0..3 {
        trainer.train_epoch(&mut Printer)?;
        let test = trainer.evaluate(Split::Test)?;
        println!(
            "test_acc after {} epochs: {:.4}",
            trainer.epochs_done(),
            test.accuracy()
        );
    }
    Ok(())
}
