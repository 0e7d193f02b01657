//! A classifier's errors class by class: the confusion matrix, per-class
//! precision, recall and accuracy, and the most confidently wrong examples.

/// One class's figures (one-vs-rest).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassStats {
    /// Of the examples predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of this class's examples, the fraction predicted as it.
    pub recall: f64,
    /// Of all examples, the fraction whose "this class or not" is right.
    pub accuracy: f64,
    /// Examples of this class.
    pub support: u64,
}

/// An example predicted wrongly.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mistake {
    /// Its index in the split.
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    /// The probability given to the predicted class.
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassReport {
    /// `confusion[true class][predicted class]`: example counts.
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassStats>,
    /// The wrong predictions with the highest confidence, most confident first.
    pub confidently_wrong: Vec<Mistake>,
}

/// The class with the highest probability (the first of equals).
pub fn predicted_class(probabilities: &[f32]) -> usize {
    (0..probabilities.len()).fold(0, |best, c| {
        if probabilities[c] > probabilities[best] {
            c
        } else {
            best
        }
    })
}

impl ClassReport {
    /// The report of `probabilities` (one row of class probabilities per
    /// example) against `labels`, keeping the `worst` most confident mistakes.
    pub fn new(labels: &[u8], probabilities: &[Vec<f32>], worst: usize) -> Self {
        let classes = probabilities.first().map_or(0, Vec::len);
        let mut confusion = vec![vec![0u64; classes]; classes];
        let mut mistakes = Vec::new();
        for (index, (&label, probs)) in labels.iter().zip(probabilities).enumerate() {
            let (label, predicted) = (usize::from(label), predicted_class(probs));
            confusion[label][predicted] += 1;
            if label != predicted {
                mistakes.push(Mistake {
                    index,
                    label,
                    predicted,
                    confidence: probs[predicted],
                });
            }
        }
        mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        mistakes.truncate(worst);
        let total: u64 = confusion.iter().flatten().sum();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class = (0..classes)
            .map(|c| {
                let hits = confusion[c][c];
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
                // Right about "c or not": everything but the misses both ways.
                let right = total - (support - hits) - (predicted - hits);
                ClassStats {
                    precision: ratio(hits, predicted),
                    recall: ratio(hits, support),
                    accuracy: ratio(right, total),
                    support,
                }
            })
            .collect();
        Self {
            confusion,
            per_class,
            confidently_wrong: mistakes,
        }
    }

    /// The fraction of examples predicted right (the matrix's trace over its sum).
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.confusion.iter().flatten().sum();
        let trace: u64 = (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum();
        trace as f64 / total.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_worked_report() {
        // Three classes, six examples: two mistakes.
        let labels = [0, 0, 1, 1, 2, 2];
        let p = |a: f32, b: f32, c: f32| vec![a, b, c];
        let probs = [
            p(0.9, 0.05, 0.05),
            p(0.2, 0.7, 0.1), // 0 taken for 1, at 0.7
            p(0.1, 0.8, 0.1),
            p(0.1, 0.85, 0.05),
            p(0.05, 0.05, 0.9),
            p(0.95, 0.0, 0.05), // 2 taken for 0, at 0.95
        ];
        let report = ClassReport::new(&labels, &probs, 5);
        assert_eq!(report.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]]);
        assert_eq!(report.accuracy(), 4.0 / 6.0);
        // Class 0: predicted twice, right once; one of two found.
        assert_eq!(
            report.per_class[0],
            ClassStats {
                precision: 0.5,
                recall: 0.5,
                accuracy: 4.0 / 6.0,
                support: 2
            }
        );
        assert_eq!(report.per_class[1].precision, 2.0 / 3.0);
        assert_eq!(report.per_class[1].recall, 1.0);
        assert_eq!(report.per_class[2].precision, 1.0);
        let wrong: Vec<(usize, usize, usize)> = report
            .confidently_wrong
            .iter()
            .map(|m| (m.index, m.label, m.predicted))
            .collect();
        assert_eq!(wrong, [(5, 2, 0), (1, 0, 1)]);
        assert_eq!(
            ClassReport::new(&labels, &probs, 1).confidently_wrong.len(),
            1
        );
    }
}
