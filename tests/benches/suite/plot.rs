//! The suite's two charts, as SVG: latency distributions and throughput vs concurrency.

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart: a label and its points.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Latency (x, log scale, microseconds) against the share of calls at or under it (y).
pub(crate) fn latency_cdf(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let x_max = max(series, |(x, _)| x) * 1.2;
    let x_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(x, _)| x))
        .filter(|&x| x > 0.0)
        .fold(f64::MAX, f64::min)
        .min(x_max / 10.0)
        * 0.8;
    let axes = Axes {
        x: x_min..x_max,
        y: 0.0..1.0,
        x_desc: "latency (us, log scale)",
        y_desc: "share of calls at or under",
    };
    draw(path, title, axes, series)
}

/// Calls per second (y) against calls in flight (x, log scale).
pub(crate) fn throughput(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let axes = Axes {
        x: 0.8..max(series, |(x, _)| x) * 1.3,
        y: 0.0..max(series, |(_, y)| y) * 1.1,
        x_desc: "calls in flight (log scale)",
        y_desc: "calls per second",
    };
    draw(path, title, axes, series)
}

/// A chart's ranges (x on a log scale) and axis labels.
struct Axes {
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'static str,
    y_desc: &'static str,
}

/// One line per series on `axes`, with a legend, written to `path`.
fn draw(path: &Path, title: &str, axes: Axes, series: &[Series]) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(axes.x.log_scale(), axes.y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    draw_lines(&mut chart, series)?;
    root.present().map_err(|e| e.to_string())
}

fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, line) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(&line.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())
}

fn max(series: &[Series], pick: impl Fn(&(f64, f64)) -> &f64) -> f64 {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(&pick))
        .fold(1.0, |a, &b| a.max(b))
}
