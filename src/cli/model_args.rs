//! Which network a command trains: the book's two (`--model mlp|convnet`,
//! the MLP's widths by `--hidden`) or any stack (`--layers SPEC`), for the
//! catalogue's 28 x 28 x 1 images.

use clap::{Args, ValueEnum};
use gpu_mnist::data::catalog::{CLASSES, FEATURES, SIDE};
use gpu_mnist::{Activation, BookModel, Layer, LossKind, ModelSpec, Padding};

/// One image of the catalogue's data sets, channels-last.
const IMAGE: [usize; 3] = [SIDE, SIDE, 1];

/// The book's networks (`--model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Chapter 2: Dense(512, relu), Dense(10, softmax) (widths: --hidden).
    Mlp,
    /// Chapter 5: Conv2D 32/64/64 (3x3, relu) with two 2x2 max-pools,
    /// Flatten, Dense(64, relu), Dense(10, softmax).
    Convnet,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The book's network to train; each brings the book's batch size and
    /// loss unless given (mlp: 128, sparse; convnet: 64, categorical).
    #[arg(long, value_enum, default_value_t = ModelArg::Mlp)]
    pub model: ModelArg,
    /// Hidden layer widths of the MLP, comma-separated (default 512; e.g. 512,256).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_hidden, conflicts_with = "layers")]
    pub hidden: Option<HiddenLayers>,
    /// Any stack of layers, input side first, comma-separated, e.g.
    /// "conv2d(32,3,relu),maxpool(2),flatten,dropout(0.5),dense(10,softmax)":
    /// conv2d(FILTERS,KERNEL[,relu|linear][,valid|same]), maxpool(SIZE),
    /// flatten, dropout(RATE), dense(UNITS[,relu|linear|softmax]).
    #[arg(long, value_name = "SPEC", value_parser = parse_layers, conflicts_with = "model")]
    pub layers: Option<LayerStack>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenLayers(pub Vec<usize>);

/// A `--layers` stack, checked to make a model of the catalogue's images.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStack(pub Vec<Layer>);

impl ModelArgs {
    /// The architecture the flags ask for.
    pub fn spec(&self) -> ModelSpec {
        match (&self.layers, &self.hidden) {
            (Some(stack), _) => stack_model(stack),
            (None, Some(hidden)) => mlp(&hidden.0),
            (None, None) => self.book_model().spec(),
        }
    }

    /// The book's model whose batch size and loss apply: a stack of layers
    /// takes the MLP's.
    fn book_model(&self) -> BookModel {
        match (&self.layers, self.model) {
            (None, ModelArg::Convnet) => BookModel::Convnet,
            _ => BookModel::Mlp,
        }
    }

    /// The book's batch size for the model.
    pub fn default_batch_size(&self) -> u32 {
        self.book_model().batch_size() as u32
    }

    /// The book's loss for the model.
    pub fn default_loss(&self) -> LossKind {
        self.book_model().loss()
    }

    /// Flags that cannot go together (a usage error).
    pub fn check(&self) -> Result<(), String> {
        if self.hidden.is_some() && self.layers.is_none() && self.model != ModelArg::Mlp {
            return Err("--hidden sets the MLP's widths; the convnet has its own (--model convnet), or give any stack with --layers".into());
        }
        Ok(())
    }
}

/// The MLP with these hidden widths for the catalogue's images and classes.
pub fn mlp(hidden: &[usize]) -> ModelSpec {
    ModelSpec::mlp(FEATURES, hidden, CLASSES)
}

/// A model as its input shape and `--layers` value, for messages:
/// `784 -> dense(512,relu),dense(10,softmax)`.
pub fn layers_text(spec: &ModelSpec) -> String {
    let layers: Vec<String> = spec
        .layers
        .iter()
        .map(|layer| {
            let activation = |a: Activation| format!("{a:?}").to_lowercase();
            match *layer {
                Layer::Dense {
                    units,
                    activation: a,
                } => format!("dense({units},{})", activation(a)),
                Layer::Conv2D {
                    filters,
                    kernel_size,
                    padding,
                    activation: a,
                } => format!(
                    "conv2d({filters},{kernel_size},{},{})",
                    activation(a),
                    format!("{padding:?}").to_lowercase()
                ),
                Layer::MaxPooling2D { pool_size } => format!("maxpool({pool_size})"),
                Layer::Flatten => "flatten".into(),
                Layer::Dropout { rate } => format!("dropout({rate})"),
            }
        })
        .collect();
    format!(
        "{} -> {}",
        gpu_mnist::data::shape_text(&spec.input_shape).trim_end_matches(" values"),
        layers.join(",")
    )
}

fn stack_model(stack: &LayerStack) -> ModelSpec {
    stack
        .0
        .iter()
        .fold(ModelSpec::sequential(IMAGE), |m, &l| m.layer(l))
}

/// Hidden widths, refused here (a usage error) when the model they make is
/// too large to allocate.
fn parse_hidden(s: &str) -> Result<HiddenLayers, String> {
    let hidden = s
        .split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(0) => Err("hidden layer widths must be at least 1".to_string()),
            Ok(n) if n > 65_536 => Err(format!("hidden width {n} is above the limit of 65536")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "'{w}' is not a layer width (expected e.g. 512 or 512,256)"
            )),
        })
        .collect::<Result<_, _>>()
        .map(HiddenLayers)?;
    mlp(&hidden.0).validate().map_err(|e| e.to_string())?;
    Ok(hidden)
}

/// A `--layers` value, refused here when a layer is malformed or the stack
/// cannot make a model of 28 x 28 x 1 images and 10 classes.
fn parse_layers(s: &str) -> Result<LayerStack, String> {
    let stack = LayerStack(
        split_layers(s)?
            .iter()
            .map(|l| parse_layer(l))
            .collect::<Result<_, _>>()?,
    );
    let spec = stack_model(&stack);
    spec.validate().map_err(|e| e.to_string())?;
    if spec.classes() != CLASSES {
        return Err(format!(
            "the last layer has {} units; the data sets have {CLASSES} classes",
            spec.classes()
        ));
    }
    Ok(stack)
}

/// The layers of `s`: split at the commas outside parentheses.
fn split_layers(s: &str) -> Result<Vec<String>, String> {
    let (mut layers, mut current, mut depth) = (Vec::new(), String::new(), 0usize);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' in '{s}'"))?;
            }
            ',' if depth == 0 => {
                layers.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(format!("unbalanced '(' in '{s}'"));
    }
    layers.push(current);
    Ok(layers.into_iter().map(|l| l.trim().to_string()).collect())
}

/// One layer: `name` or `name(arg,...)`.
fn parse_layer(text: &str) -> Result<Layer, String> {
    let (name, args) = match text.split_once('(') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("'{text}': expected ')' at the end"))?;
            let args: Vec<&str> = inner.split(',').map(str::trim).collect();
            (name.trim(), args)
        }
        None => (text, Vec::new()),
    };
    let usage = |form: &str| format!("'{text}' is not a layer: expected {form}");
    let number = |arg: &str, form: &str| arg.parse::<usize>().map_err(|_| usage(form));
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "dense" => {
            const FORM: &str = "dense(UNITS[,relu|linear|softmax])";
            let (units, activation) = match args.as_slice() {
                [units] => (number(units, FORM)?, Activation::Linear),
                [units, activation] => (number(units, FORM)?, parse_activation(activation, FORM, &usage)?),
                _ => return Err(usage(FORM)),
            };
            Ok(Layer::Dense { units, activation })
        }
        "conv2d" => {
            const FORM: &str = "conv2d(FILTERS,KERNEL[,relu|linear][,valid|same])";
            let (filters, kernel_size, rest) = match args.as_slice() {
                [f, k, rest @ ..] if rest.len() <= 2 => (number(f, FORM)?, number(k, FORM)?, rest),
                _ => return Err(usage(FORM)),
            };
            let (mut activation, mut padding) = (Activation::Linear, Padding::Valid);
            for option in rest {
                match option.to_ascii_lowercase().as_str() {
                    "valid" => padding = Padding::Valid,
                    "same" => padding = Padding::Same,
                    other => activation = parse_activation(other, FORM, &usage)?,
                }
            }
            Ok(Layer::Conv2D {
                filters,
                kernel_size,
                padding,
                activation,
            })
        }
        "maxpool" | "maxpool2d" | "max_pooling2d" | "maxpooling2d" => match args.as_slice() {
            [size] => Ok(Layer::MaxPooling2D {
                pool_size: number(size, "maxpool(SIZE)")?,
            }),
            _ => Err(usage("maxpool(SIZE)")),
        },
        "flatten" if args.is_empty() => Ok(Layer::Flatten),
        "dropout" => match args.as_slice() {
            [rate] => Ok(Layer::Dropout {
                rate: rate.parse::<f32>().map_err(|_| usage("dropout(RATE)"))?,
            }),
            _ => Err(usage("dropout(RATE)")),
        },
        _ => Err(format!(
            "'{text}' is not a layer: expected conv2d(...), maxpool(...), flatten, dropout(...) or dense(...)"
        )),
    }
}

fn parse_activation(
    text: &str,
    form: &str,
    usage: &dyn Fn(&str) -> String,
) -> Result<Activation, String> {
    match text.to_ascii_lowercase().as_str() {
        "relu" => Ok(Activation::Relu),
        "linear" => Ok(Activation::Linear),
        "softmax" => Ok(Activation::Softmax),
        _ => Err(usage(form)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_convnet_reads_as_a_stack() {
        let stack = parse_layers(
            "conv2d(32,3,relu), maxpool(2), conv2d(64,3,relu), maxpool(2), conv2d(64,3,relu), flatten, dense(64,relu), dense(10,softmax)",
        )
        .unwrap();
        assert_eq!(stack_model(&stack), ModelSpec::convnet(28, 28, 10));
        let same =
            parse_layers("conv2d(4,5,same,relu),flatten,dropout(0.25),dense(10,softmax)").unwrap();
        assert_eq!(
            same.0[0],
            Layer::Conv2D {
                filters: 4,
                kernel_size: 5,
                padding: Padding::Same,
                activation: Activation::Relu
            }
        );
        assert_eq!(same.0[2], Layer::Dropout { rate: 0.25 });
        // What messages show is a --layers value that reads back the same.
        let text = layers_text(&stack_model(&same));
        assert_eq!(
            text,
            "28x28x1 -> conv2d(4,5,relu,same),flatten,dropout(0.25),dense(10,softmax)"
        );
        let back = parse_layers(text.split_once(" -> ").unwrap().1).unwrap();
        assert_eq!(back, same);
    }

    #[test]
    fn stacks_that_cannot_work_are_named() {
        let err = |s: &str| parse_layers(s).unwrap_err();
        assert_eq!(
            err("dense(10,softmax)"),
            "layer 0 (Dense) needs a flat input, but its input is (None, 28, 28, 1): add Flatten before it"
        );
        assert_eq!(
            err("maxpool(2),maxpool(2),maxpool(8),flatten,dense(10,softmax)"),
            "layer 2 (MaxPooling2D): a 8x8 window does not fit its 7x7 input"
        );
        assert_eq!(
            err("flatten,dense(12,softmax)"),
            "the last layer has 12 units; the data sets have 10 classes"
        );
        assert_eq!(
            err("conv2d(32),flatten,dense(10,softmax)"),
            "'conv2d(32)' is not a layer: expected conv2d(FILTERS,KERNEL[,relu|linear][,valid|same])"
        );
        assert_eq!(
            err("pool(2)"),
            "'pool(2)' is not a layer: expected conv2d(...), maxpool(...), flatten, dropout(...) or dense(...)"
        );
        assert_eq!(
            err("flatten,dense(10,softmax"),
            "unbalanced '(' in 'flatten,dense(10,softmax'"
        );
        assert_eq!(
            err("flatten,dropout(1.5),dense(10,softmax)"),
            "layer 1 (Dropout): the rate 1.5 is not in [0, 1)"
        );
    }
}
