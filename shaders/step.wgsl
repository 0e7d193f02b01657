// Per-step parameters shared by every kernel (bind group 1, dynamic offset): the
// step's row count (smaller for the last, partial batch), where its rows start in
// the example order, and the step's slot in the per-step metric arrays.
struct Step {
    rows: u32,
    row_offset: u32,
    slot: u32,
    _pad: u32,
}

@group(1) @binding(0) var<uniform> step: Step;
