//! Training curves: loss and accuracy by epoch, training beside validation,
//! drawn with plotters as SVG or PNG (chosen by the file's extension). The
//! image is rendered in memory and written atomically, so a failed plot never
//! leaves a half-written file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gpu_mnist::atomic_file::write_atomically;
use gpu_mnist::EpochRecord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Image size in pixels (SVG user units): two panels of 600 x 470 under a title.
const SIZE: (u32, u32) = (1200, 500);

/// The font family every text asks for; the bundled font is registered under it.
const FONT: &str = "sans-serif";
const TRAINING: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(255, 127, 14);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot plot to {0}: the file name must end in .svg or .png")]
    Format(PathBuf),
    #[error("no epochs to plot")]
    NoEpochs,
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot encode the PNG: {0}")]
    Encode(#[from] png::EncodingError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The image formats `write` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format `path`'s extension names (any letter case).
    pub fn of(path: &Path) -> Result<Self, PlotError> {
        let extension = path.extension().and_then(|e| e.to_str());
        match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => Err(PlotError::Format(path.to_path_buf())),
        }
    }
}

/// Draws the curves of `epochs` into `path` (.svg or .png), replacing it whole.
pub fn write(path: &Path, epochs: &[EpochRecord]) -> Result<(), PlotError> {
    let bytes = render(Format::of(path)?, epochs)?;
    write_atomically(path, &bytes).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The image's bytes in `format`.
fn render(format: Format, epochs: &[EpochRecord]) -> Result<Vec<u8>, PlotError> {
    if epochs.is_empty() {
        return Err(PlotError::NoEpochs);
    }
    register_font()?;
    match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                draw(&root, epochs).map_err(drawing)?;
                root.present().map_err(drawing)?;
            }
            Ok(svg.into_bytes())
        }
        Format::Png => {
            let (width, height) = SIZE;
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
                draw(&root, epochs).map_err(drawing)?;
                root.present().map_err(drawing)?;
            }
            let mut png = Vec::new();
            let mut encoder = png::Encoder::new(&mut png, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&rgb)?;
            writer.finish()?;
            Ok(png)
        }
    }
}

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Registers the bundled DejaVu Sans once: with plotters' `ab_glyph` text the
/// plot needs no system fonts (a headless machine may have none), and the SVG
/// backend measures its text with it too.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if *registered {
        Ok(())
    } else {
        Err(PlotError::Draw("the bundled font does not load".into()))
    }
}

/// One panel's metric: how it is named, its bounds, and where its legend sits
/// (the corner its curves usually leave empty).
struct Metric {
    caption: &'static str,
    unit: &'static str,
    bounds: Range<f64>,
    legend: SeriesLabelPosition,
    training: fn(&EpochRecord) -> f64,
    validation: fn(&EpochRecord) -> Option<f64>,
}

const LOSS: Metric = Metric {
    caption: "Loss",
    unit: "cross-entropy",
    bounds: 0.0..f64::INFINITY,
    legend: SeriesLabelPosition::UpperRight,
    training: |r| r.loss,
    validation: |r| r.val_loss,
};

const ACCURACY: Metric = Metric {
    caption: "Accuracy",
    unit: "fraction correct",
    bounds: 0.0..1.0,
    legend: SeriesLabelPosition::LowerRight,
    training: |r| r.accuracy,
    validation: |r| r.val_accuracy,
};

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    epochs: &[EpochRecord],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let title = match epochs.len() {
        1 => "Training curves: 1 epoch".to_string(),
        n => format!("Training curves: {n} epochs"),
    };
    let root = root.margin(8, 4, 4, 4).titled(&title, (FONT, 30))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    panel(&left, &LOSS, epochs)?;
    panel(&right, &ACCURACY, epochs)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    metric: &Metric,
    epochs: &[EpochRecord],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let training = series(epochs, |r| Some((metric.training)(r)));
    let validation = series(epochs, metric.validation);
    let values = training.iter().chain(&validation).map(|&(_, v)| v);
    let x = epoch_range(epochs);
    let y = value_range(values, &metric.bounds);
    let decimals = decimals(&y);
    let mut chart = ChartBuilder::on(area)
        .caption(metric.caption, (FONT, 26))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(metric.unit)
        .x_labels(epochs.len().clamp(2, 10))
        // Epochs are whole: a tick between two would repeat a label.
        .x_label_formatter(&|e| {
            if e.fract() == 0.0 {
                format!("{e:.0}")
            } else {
                String::new()
            }
        })
        .y_labels(Y_LABELS)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 19))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (name, points, color) in [
        ("training", training, TRAINING),
        ("validation", validation, VALIDATION),
    ] {
        if points.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(metric.legend.clone())
        .label_font((FONT, 19))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// Value-axis labels per panel (at most; plotters picks round steps).
const Y_LABELS: usize = 10;

/// The decimals that the step between the value axis's labels needs, and no
/// more (0.05 steps: 0.90, 0.95; 0.002 steps: 0.984, 0.986).
fn decimals(range: &Range<f64>) -> usize {
    let ticks = RangedCoordf64::from(range.clone()).key_points(Y_LABELS);
    let step = match ticks[..] {
        [a, b, ..] => b - a,
        _ => range.end - range.start,
    };
    // The small allowance keeps 0.1 computed as 0.0999... at one decimal.
    (-step.log10() - 1e-6).ceil().clamp(0.0, 9.0) as usize
}

/// (epoch, value) for the epochs that have a finite value: a diverged run's
/// NaN or infinite loss is left out rather than stretching the axis to nothing.
fn series(epochs: &[EpochRecord], value: impl Fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    epochs
        .iter()
        .filter_map(|r| value(r).map(|v| (r.epoch as f64, v)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// The epochs with a small margin, so the first and last points clear the frame.
fn epoch_range(epochs: &[EpochRecord]) -> Range<f64> {
    let first = epochs.iter().map(|r| r.epoch).min().unwrap_or(1) as f64;
    let last = epochs.iter().map(|r| r.epoch).max().unwrap_or(1) as f64;
    let margin = if last > first {
        (last - first) * 0.03
    } else {
        0.5
    };
    first - margin..last + margin
}

/// The values' range with a margin, kept within the metric's `bounds` (loss is
/// never negative, accuracy never above 1) so the axis shows no impossible values.
fn value_range(values: impl Iterator<Item = f64>, bounds: &Range<f64>) -> Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if low > high {
        // Nothing finite to show.
        return bounds.start..bounds.end.min(1.0);
    }
    let margin = if high > low {
        (high - low) * 0.08
    } else {
        high.abs().max(1e-3) * 0.05
    };
    let (low, high) = (
        (low - margin).max(bounds.start),
        (high + margin).min(bounds.end),
    );
    low..high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_chooses_the_format() {
        assert_eq!(Format::of(Path::new("a/curves.svg")).unwrap(), Format::Svg);
        assert_eq!(Format::of(Path::new("curves.PNG")).unwrap(), Format::Png);
        for bad in ["curves.bmp", "curves", "svg"] {
            let e = Format::of(Path::new(bad)).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("cannot plot to {bad}: the file name must end in .svg or .png")
            );
        }
    }

    #[test]
    fn value_ranges_have_margins_within_the_bounds() {
        let r = value_range([0.9, 0.99].into_iter(), &ACCURACY.bounds);
        assert!(r.start < 0.9 && (r.end - 0.9972).abs() < 1e-9, "{r:?}");
        let r = value_range([1.0].into_iter(), &ACCURACY.bounds);
        assert!(r.start < 1.0 && r.end == 1.0, "{r:?}");
        let r = value_range([0.01, 2.0].into_iter(), &LOSS.bounds);
        assert!(r.start == 0.0 && r.end > 2.0, "{r:?}");
        assert_eq!(value_range(std::iter::empty(), &LOSS.bounds), 0.0..1.0);
    }

    #[test]
    fn tick_labels_have_the_decimals_their_step_needs() {
        assert_eq!(decimals(&(0.0..1.2)), 1);
        assert_eq!(decimals(&(0.65..0.92)), 2);
        assert_eq!(decimals(&(0.91..0.99)), 2);
        assert_eq!(decimals(&(0.975..0.992)), 3);
        assert_eq!(decimals(&(0.0..40.0)), 0);
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let record = |epoch, loss| EpochRecord {
            epoch,
            loss,
            accuracy: 0.5,
            val_loss: None,
            val_accuracy: None,
            seconds: 1.0,
        };
        let epochs = [
            record(1, 2.0),
            record(2, f64::NAN),
            record(3, f64::INFINITY),
        ];
        assert_eq!(series(&epochs, |r| Some(r.loss)), vec![(1.0, 2.0)]);
        assert!(series(&epochs, |r| r.val_loss).is_empty());
        // And drawing them neither fails nor panics.
        assert!(render(Format::Svg, &epochs).is_ok());
    }
}
