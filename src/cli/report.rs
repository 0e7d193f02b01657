//! `evaluate`'s report as text: the confusion matrix, per-class figures and
//! the most confidently wrong images.

use gpu_mnist::report::ClassReport;

/// The report laid out for a terminal, classes named by `names`.
pub fn text(report: &ClassReport, names: &[String]) -> String {
    let classes = report.confusion.len();
    let mut out = String::from("confusion matrix (rows: true class, columns: predicted)\n");
    out += &format!("{:>6}", "");
    for c in 0..classes {
        out += &format!("{c:>6}");
    }
    out.push('\n');
    for (c, row) in report.confusion.iter().enumerate() {
        out += &format!("{c:>6}");
        for count in row {
            out += &format!("{count:>6}");
        }
        out.push('\n');
    }
    // A class shown by its index, and its name where that says more.
    let label = |c: usize| match names[c] == c.to_string() {
        true => c.to_string(),
        false => format!("{c} {}", names[c]),
    };
    let width = (0..classes)
        .map(|c| label(c).chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    out += &format!(
        "\n{:<width$}  precision  recall  accuracy  support\n",
        "class"
    );
    for (c, stats) in report.per_class.iter().enumerate() {
        out += &format!(
            "{:<width$}  {:>9.4}  {:>6.4}  {:>8.4}  {:>7}\n",
            label(c),
            stats.precision,
            stats.recall,
            stats.accuracy,
            stats.support
        );
    }
    if !report.confidently_wrong.is_empty() {
        out += "\nmost confidently wrong:\n";
        for m in &report.confidently_wrong {
            out += &format!(
                "  image {:>5}: label {}, predicted {} ({:.1}%)\n",
                m.index,
                names[m.label],
                names[m.predicted],
                100.0 * m.confidence
            );
        }
    }
    out
}
