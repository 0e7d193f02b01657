//! Each layer's forward and backward ops, unfused: a layer reads its input
//! buffer, writes [`Buf::Output`] (the head: its logits, [`Buf::Pre`]), and
//! in the backward pass turns the gradient at its output into the gradient
//! at its input (the layer below's [`Buf::OutputGrad`]), its activation's
//! derivative included. A new layer type adds its arm to [`emit`].

use super::{
    BatchDim, Buf, ConvGeometry, DropoutMask, Epilogue, Matmul, MatmulForm, Op, PoolGeometry,
};
use crate::model::{Activation, Image, Layer, ModelSpec, Padding};

/// A model's ops and buffers, before fusion.
pub(super) struct Emitted {
    pub forward: Vec<Op>,
    /// In execution order: the last layer's first.
    pub backward: Vec<Op>,
    pub logits: Buf,
    pub logits_grad: Buf,
    /// Floats per example of every buffer the layers name.
    pub widths: Vec<(Buf, usize)>,
    /// `(rows, cols)` of each parameter tensor, as the products read them.
    pub tensors: Vec<(usize, usize)>,
}

/// The ops of `spec` (valid) at `batch` examples: for training, or for
/// inference, where dropout passes its input through.
pub(super) fn emit(spec: &ModelSpec, batch: usize, training: bool) -> Emitted {
    let mut out = Emitted {
        forward: Vec::new(),
        backward: Vec::new(),
        logits: Buf::Input,
        logits_grad: Buf::Input,
        widths: Vec::new(),
        tensors: Vec::new(),
    };
    let inputs = spec.input_shapes();
    let outputs = spec.output_shapes().expect("a validated model");
    // The buffer the next layer reads, and where its input gradient goes:
    // none until a layer with parameters, whose gradients need it.
    let mut x = Buf::Input;
    let mut dx: Option<Buf> = None;
    let mut below_has_params = false;
    let mut dropout_streams = 0;
    // Each layer's backward ops; the backward pass runs them last layer first.
    let mut per_layer_backward: Vec<Vec<Op>> = Vec::with_capacity(spec.layers.len());
    for (l, layer) in spec.layers.iter().enumerate() {
        let (input, output) = (&inputs[l], &outputs[l]);
        let output_len: usize = output.iter().product();
        let tensors_before = out.tensors.len();
        let mut backward = Vec::new();
        match *layer {
            Layer::Dense { units, activation } => {
                let fan_in = input.iter().product();
                let affine = Affine {
                    layer: l,
                    a: x,
                    a_grad: dx,
                    k: fan_in,
                    n: units,
                    positions: 1,
                    activation,
                    first_tensor: out.tensors.len(),
                    batch,
                };
                out.tensors.extend([(fan_in, units), (1, units)]);
                affine.emit(&mut out, &mut backward);
            }
            Layer::Conv2D {
                filters,
                kernel_size,
                padding,
                activation,
            } => {
                let conv = conv_geometry(
                    Image::of(input).expect("a validated conv input"),
                    kernel_size,
                    padding,
                    output,
                );
                let patches = Buf::Patches(l);
                out.widths.push((patches, conv.positions() * conv.patch()));
                out.forward.push(Op::Im2col {
                    src: x,
                    dst: patches,
                    conv,
                });
                let patches_grad = dx.map(|_| {
                    out.widths
                        .push((Buf::PatchesGrad(l), conv.positions() * conv.patch()));
                    Buf::PatchesGrad(l)
                });
                let affine = Affine {
                    layer: l,
                    a: patches,
                    a_grad: patches_grad,
                    k: conv.patch(),
                    n: filters,
                    positions: conv.positions(),
                    activation,
                    first_tensor: out.tensors.len(),
                    batch,
                };
                out.tensors.extend([(conv.patch(), filters), (1, filters)]);
                affine.emit(&mut out, &mut backward);
                if let (Some(src), Some(dst)) = (patches_grad, dx) {
                    backward.push(Op::Col2im { src, dst, conv });
                }
            }
            Layer::MaxPooling2D { pool_size } => {
                let pool = PoolGeometry {
                    input: Image::of(input).expect("a validated pool input"),
                    size: pool_size,
                    out_height: output[0],
                    out_width: output[1],
                };
                out.forward.push(Op::MaxPool {
                    src: x,
                    dst: Buf::Output(l),
                    pool,
                });
                if let Some(dst) = dx {
                    backward.push(Op::MaxPoolGrad {
                        grad: Buf::OutputGrad(l),
                        src: x,
                        dst,
                        pool,
                        relu: false,
                    });
                }
                out.widths.extend(output_buffers(l, output_len));
            }
            // Channels-last data is already flat: the next layer reads the
            // same buffer.
            Layer::Flatten => continue,
            Layer::Dropout { rate } => {
                let stream = dropout_streams;
                dropout_streams += 1;
                if !training {
                    continue;
                }
                let mask = DropoutMask {
                    rate,
                    stream,
                    width: output_len,
                };
                out.forward.push(Op::Dropout {
                    src: x,
                    dst: Buf::Output(l),
                    mask,
                });
                if let Some(dst) = dx {
                    backward.push(Op::Dropout {
                        src: Buf::OutputGrad(l),
                        dst,
                        mask,
                    });
                }
                out.widths.extend(output_buffers(l, output_len));
            }
        }
        per_layer_backward.push(backward);
        below_has_params |= out.tensors.len() > tensors_before;
        x = Buf::Output(l);
        dx = below_has_params.then_some(Buf::OutputGrad(l));
    }
    out.backward = per_layer_backward.into_iter().rev().flatten().collect();
    let head = spec.layers.len() - 1;
    out.logits = Buf::Pre(head);
    out.logits_grad = Buf::PreGrad(head);
    out
}

/// A layer's output and the gradient at it, `width` values per example.
fn output_buffers(layer: usize, width: usize) -> [(Buf, usize); 2] {
    [(Buf::Output(layer), width), (Buf::OutputGrad(layer), width)]
}

/// The windows of a stride-1 convolution with the output shape the model
/// gives it (`ModelSpec::output_shapes` owns that formula); `same` pads
/// `(k - 1) / 2` before and the rest after, as Keras does.
fn conv_geometry(input: Image, kernel: usize, padding: Padding, output: &[usize]) -> ConvGeometry {
    let pad = match padding {
        Padding::Valid => 0,
        Padding::Same => (kernel - 1) / 2,
    };
    ConvGeometry {
        input,
        kernel,
        pad_top: pad,
        pad_left: pad,
        out_height: output[0],
        out_width: output[1],
    }
}

/// `Z = A·W + b` then the activation, over `positions` rows per example:
/// a Dense layer (A its input) or a convolution (A its windows).
struct Affine {
    layer: usize,
    a: Buf,
    /// Where the gradient with respect to A goes, if anything needs it.
    a_grad: Option<Buf>,
    k: usize,
    n: usize,
    positions: usize,
    activation: Activation,
    first_tensor: usize,
    batch: usize,
}

impl Affine {
    fn emit(&self, out: &mut Emitted, backward: &mut Vec<Op>) {
        let l = self.layer;
        let (w, b) = (
            Buf::Param(self.first_tensor),
            Buf::Param(self.first_tensor + 1),
        );
        let (m, width) = (self.batch * self.positions, self.positions * self.n);
        let product = |a, b, c, transpose_a, transpose_b, batch_dim, (m, k, n)| {
            Op::Matmul(Matmul {
                a,
                b,
                c,
                extra: None,
                form: MatmulForm {
                    transpose_a,
                    transpose_b,
                    epilogue: Epilogue::None,
                    batch_dim,
                },
                m,
                k,
                n,
                positions: self.positions,
            })
        };
        // Where the affine output goes, and the gradient the backward pass
        // starts from.
        let (z, dz) = match self.activation {
            Activation::Linear => (Buf::Output(l), Buf::OutputGrad(l)),
            Activation::Relu | Activation::Softmax => (Buf::Pre(l), Buf::PreGrad(l)),
        };
        out.forward.extend([
            product(self.a, w, z, false, false, BatchDim::M, (m, self.k, self.n)),
            Op::AddBias {
                buf: z,
                bias: b,
                cols: self.n,
                positions: self.positions,
            },
        ]);
        out.widths.extend([(z, width), (dz, width)]);
        if self.activation == Activation::Relu {
            out.forward.push(Op::Relu {
                src: z,
                dst: Buf::Output(l),
                width,
            });
            backward.push(Op::ReluGrad {
                grad: Buf::OutputGrad(l),
                mask: Buf::Output(l),
                dst: dz,
                width,
            });
            out.widths.extend(output_buffers(l, width));
        }
        backward.extend([
            product(
                self.a,
                dz,
                Buf::Grad(self.first_tensor),
                true,
                false,
                BatchDim::K,
                (self.k, m, self.n),
            ),
            Op::ColumnSums {
                src: dz,
                dst: Buf::Grad(self.first_tensor + 1),
                cols: self.n,
                positions: self.positions,
            },
        ]);
        if let Some(a_grad) = self.a_grad {
            backward.push(product(
                dz,
                w,
                a_grad,
                false,
                true,
                BatchDim::M,
                (m, self.n, self.k),
            ));
        }
    }
}
