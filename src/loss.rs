//! Which form the labels take for the fused softmax + cross-entropy.

/// Keras' two categorical cross-entropies; both are computed from the logits with
/// a log-sum-exp, fused with the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LossKind {
    /// Integer labels (`sparse_categorical_crossentropy`).
    #[serde(rename = "sparse_categorical_crossentropy")]
    SparseCategorical,
    /// One-hot label vectors (`categorical_crossentropy`).
    #[serde(rename = "categorical_crossentropy")]
    Categorical,
}
