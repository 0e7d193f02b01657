//! Which form the labels take for the fused softmax + cross-entropy.

/// Keras' two categorical cross-entropies; both are computed from the logits with
/// a log-sum-exp, fused with the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum LossKind {
    /// Integer labels (`sparse_categorical_crossentropy`).
    #[value(name = "sparse_categorical_crossentropy", alias = "sparse")]
    SparseCategorical,
    /// One-hot label vectors (`categorical_crossentropy`).
    #[value(name = "categorical_crossentropy", alias = "categorical")]
    Categorical,
}
