//! Optimizers with Keras' defaults and update rules. The CPU backend applies them
//! here; the wgpu device's `optimizer.wgsl` implements the same formulas.

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Rmsprop,
    Adam,
}

/// Hyper-parameters of one optimizer. Fields that a rule does not use are ignored.
/// A saved spec without a field (one saved before the field existed) reads
/// it as Keras' default, so older checkpoints keep resuming.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f32,
    /// Momentum of SGD and RMSprop (Keras' rules); 0 is none.
    #[serde(default = "keras::momentum")]
    pub momentum: f32,
    #[serde(default = "keras::nesterov")]
    pub nesterov: bool,
    /// RMSprop decay of the squared-gradient average.
    #[serde(default = "keras::rho")]
    pub rho: f32,
    #[serde(default = "keras::beta1")]
    pub beta1: f32,
    #[serde(default = "keras::beta2")]
    pub beta2: f32,
    #[serde(default = "keras::epsilon")]
    pub epsilon: f32,
}

/// Keras' defaults of the fields every rule shares, for specs read without them.
mod keras {
    use super::{OptimizerKind, OptimizerSpec};

    fn any() -> OptimizerSpec {
        OptimizerSpec::keras_default(OptimizerKind::Rmsprop)
    }
    pub fn momentum() -> f32 {
        any().momentum
    }
    pub fn nesterov() -> bool {
        any().nesterov
    }
    pub fn rho() -> f32 {
        any().rho
    }
    pub fn beta1() -> f32 {
        any().beta1
    }
    pub fn beta2() -> f32 {
        any().beta2
    }
    pub fn epsilon() -> f32 {
        any().epsilon
    }
}

impl OptimizerSpec {
    /// Keras defaults: sgd lr 1e-2; rmsprop lr 1e-3, rho 0.9; adam lr 1e-3,
    /// betas 0.9 / 0.999; epsilon 1e-7.
    pub fn keras_default(kind: OptimizerKind) -> Self {
        Self {
            kind,
            lr: match kind {
                OptimizerKind::Sgd => 1e-2,
                OptimizerKind::Rmsprop | OptimizerKind::Adam => 1e-3,
            },
            momentum: 0.0,
            nesterov: false,
            rho: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// State tensors kept per parameter tensor.
    pub fn state_slots(&self) -> usize {
        match self.kind {
            OptimizerKind::Sgd if self.momentum == 0.0 => 0,
            OptimizerKind::Sgd => 1,
            OptimizerKind::Rmsprop if self.momentum == 0.0 => 1,
            OptimizerKind::Rmsprop | OptimizerKind::Adam => 2,
        }
    }

    /// The state slot holding a running mean of squared gradients (RMSprop's
    /// and Adam's), which can never be negative.
    pub fn mean_square_slot(&self) -> Option<usize> {
        match self.kind {
            OptimizerKind::Sgd => None,
            OptimizerKind::Rmsprop => Some(0),
            OptimizerKind::Adam => Some(1),
        }
    }

    /// Adam's bias-corrected step size at 1-based step `t`, as Keras computes it:
    /// `lr * sqrt(1 - beta2^t) / (1 - beta1^t)`.
    pub fn adam_step_size(&self, t: u64) -> f32 {
        let t = t as f64;
        let (b1, b2) = (self.beta1 as f64, self.beta2 as f64);
        (self.lr as f64 * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))) as f32
    }

    /// Applies one update to `param` given its gradient and state (`state_slots`
    /// slices of the same length); `t` is the 1-based step number.
    pub fn apply<S: AsMut<[f32]>>(&self, t: u64, param: &mut [f32], grad: &[f32], state: &mut [S]) {
        let lr = self.lr;
        match (self.kind, state) {
            (OptimizerKind::Sgd, []) => sgd(lr, param, grad),
            (OptimizerKind::Sgd, [velocity]) => momentum(
                lr,
                self.momentum,
                self.nesterov,
                param,
                grad,
                velocity.as_mut(),
            ),
            (OptimizerKind::Rmsprop, [avg_sq]) => {
                rmsprop(lr, self.rho, self.epsilon, param, grad, avg_sq.as_mut())
            }
            (OptimizerKind::Rmsprop, [avg_sq, velocity]) => {
                rmsprop_momentum(self, param, grad, avg_sq.as_mut(), velocity.as_mut())
            }
            (OptimizerKind::Adam, [m1, m2]) => adam(
                self.adam_step_size(t),
                self,
                param,
                grad,
                m1.as_mut(),
                m2.as_mut(),
            ),
            (kind, state) => panic!(
                "{kind:?} with {} state slots: state must come from state_slots()",
                state.len()
            ),
        }
    }
}

// The update loops, each compiled for the widest vector unit present.

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn sgd(lr: f32, param: &mut [f32], grad: &[f32]) {
    for (w, g) in param.iter_mut().zip(grad) {
        *w -= lr * g;
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn momentum(
    lr: f32,
    m: f32,
    nesterov: bool,
    param: &mut [f32],
    grad: &[f32],
    velocity: &mut [f32],
) {
    for ((w, g), v) in param.iter_mut().zip(grad).zip(velocity) {
        *v = m * *v - lr * g;
        *w += if nesterov { m * *v - lr * g } else { *v };
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn rmsprop(lr: f32, rho: f32, epsilon: f32, param: &mut [f32], grad: &[f32], avg_sq: &mut [f32]) {
    for ((w, g), v) in param.iter_mut().zip(grad).zip(avg_sq) {
        *v = rho * *v + (1.0 - rho) * g * g;
        *w -= lr * g / (*v + epsilon).sqrt();
    }
}

/// Keras' RMSprop with momentum: the step `lr * g / sqrt(v + eps)` feeds a
/// velocity, `velocity = momentum * velocity + step`, which is subtracted.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn rmsprop_momentum(
    spec: &OptimizerSpec,
    param: &mut [f32],
    grad: &[f32],
    avg_sq: &mut [f32],
    velocity: &mut [f32],
) {
    let (lr, rho, eps, m) = (spec.lr, spec.rho, spec.epsilon, spec.momentum);
    for (((w, g), v), u) in param.iter_mut().zip(grad).zip(avg_sq).zip(velocity) {
        *v = rho * *v + (1.0 - rho) * g * g;
        *u = m * *u + lr * g / (*v + eps).sqrt();
        *w -= *u;
    }
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn adam(
    step: f32,
    spec: &OptimizerSpec,
    param: &mut [f32],
    grad: &[f32],
    m1: &mut [f32],
    m2: &mut [f32],
) {
    let (b1, b2, eps) = (spec.beta1, spec.beta2, spec.epsilon);
    for (((w, g), m), v) in param.iter_mut().zip(grad).zip(m1).zip(m2) {
        *m += (g - *m) * (1.0 - b1);
        *v += (g * g - *v) * (1.0 - b2);
        *w -= step * *m / (v.sqrt() + eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_saved_without_newer_fields_reads_keras_defaults() {
        let saved = r#"{"kind":"adam","lr":0.002}"#;
        let spec: OptimizerSpec = serde_json::from_str(saved).unwrap();
        assert_eq!(
            spec,
            OptimizerSpec {
                lr: 0.002,
                ..OptimizerSpec::keras_default(OptimizerKind::Adam)
            }
        );
    }

    /// One update of a single weight w = 0.5 with gradient g = 0.2, then a
    /// second with g = -0.1, against Keras' formulas worked by hand.
    fn two_steps(spec: OptimizerSpec) -> (f32, Vec<f32>) {
        let mut w = [0.5f32];
        let mut state = vec![vec![0.0f32]; spec.state_slots()];
        spec.apply(1, &mut w, &[0.2], &mut state);
        spec.apply(2, &mut w, &[-0.1], &mut state);
        (w[0], state.into_iter().map(|s| s[0]).collect())
    }

    fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() <= 1e-6 * b.abs().max(1e-3)
    }

    #[test]
    fn sgd_is_w_minus_lr_g() {
        let (w, state) = two_steps(OptimizerSpec::keras_default(OptimizerKind::Sgd));
        // 0.5 - 0.01 * 0.2 - 0.01 * (-0.1)
        assert!(close(w, 0.499), "{w}");
        assert!(state.is_empty());
    }

    #[test]
    fn momentum_and_nesterov_follow_keras() {
        let spec = OptimizerSpec {
            momentum: 0.9,
            ..OptimizerSpec::keras_default(OptimizerKind::Sgd)
        };
        // v1 = -0.002, w1 = 0.498; v2 = 0.9 * -0.002 + 0.001 = -0.0008, w2 = 0.4972.
        let (w, state) = two_steps(spec);
        assert!(
            close(w, 0.4972) && close(state[0], -0.0008),
            "{w} {state:?}"
        );
        // Nesterov: w += m * v - lr * g: w1 = 0.5 - 0.0018 - 0.002 = 0.4962;
        // w2 = 0.4962 + 0.9 * -0.0008 + 0.001 = 0.49648.
        let (w, _) = two_steps(OptimizerSpec {
            nesterov: true,
            ..spec
        });
        assert!(close(w, 0.49648), "{w}");
    }

    #[test]
    fn rmsprop_follows_keras() {
        let (w, state) = two_steps(OptimizerSpec::keras_default(OptimizerKind::Rmsprop));
        // v1 = 0.1 * 0.04 = 0.004, w1 = 0.5 - 1e-3 * 0.2 / sqrt(0.004 + 1e-7);
        // v2 = 0.9 * 0.004 + 0.1 * 0.01 = 0.0046, w2 = w1 + 1e-3 * 0.1 / sqrt(0.0046 + 1e-7).
        let w1 = 0.5 - 1e-3 * 0.2 / (0.004f64 + 1e-7).sqrt();
        let w2 = w1 + 1e-3 * 0.1 / (0.0046f64 + 1e-7).sqrt();
        assert!(close(w, w2), "{w} vs {w2}");
        assert!(close(state[0], 0.0046), "{state:?}");
    }

    #[test]
    fn rmsprop_momentum_follows_keras() {
        let spec = OptimizerSpec {
            momentum: 0.5,
            ..OptimizerSpec::keras_default(OptimizerKind::Rmsprop)
        };
        let (w, state) = two_steps(spec);
        // Steps as plain RMSprop: s1 = 1e-3 * 0.2 / sqrt(0.004 + 1e-7),
        // s2 = -1e-3 * 0.1 / sqrt(0.0046 + 1e-7); u1 = s1, u2 = 0.5 * u1 + s2.
        let s1 = 1e-3 * 0.2 / (0.004f64 + 1e-7).sqrt();
        let s2 = -1e-3 * 0.1 / (0.0046f64 + 1e-7).sqrt();
        let u2 = 0.5 * s1 + s2;
        assert!(close(w, 0.5 - s1 - u2), "{w}");
        assert!(close(state[0], 0.0046) && close(state[1], u2), "{state:?}");
    }

    #[test]
    fn adam_follows_keras() {
        let (w, state) = two_steps(OptimizerSpec::keras_default(OptimizerKind::Adam));
        // m1 = 0.02, v1 = 4e-5, step1 = 1e-3 * sqrt(1 - 0.999) / (1 - 0.9);
        // m2 = 0.9 * 0.02 - 0.01 = 0.008, v2 = 0.999 * 4e-5 + 1e-5 = 4.996e-5,
        // step2 = 1e-3 * sqrt(1 - 0.999^2) / (1 - 0.9^2).
        let step1 = 1e-3 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
        let step2 = 1e-3 * (1.0f64 - 0.999 * 0.999).sqrt() / (1.0 - 0.81);
        let w1 = 0.5 - step1 * 0.02 / (4e-5f64.sqrt() + 1e-7);
        let w2 = w1 - step2 * 0.008 / (4.996e-5f64.sqrt() + 1e-7);
        assert!(close(w, w2), "{w} vs {w2}");
        assert!(
            close(state[0], 0.008) && close(state[1], 4.996e-5),
            "{state:?}"
        );
    }
}
