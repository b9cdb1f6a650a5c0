//! PNG plots of what a scenario measured, drawn with `plotters` on its bitmap backend:
//! latency CDFs, series over time and bars.
//!
//! Text is DejaVu Sans, embedded in the binary (the `dejavu` crate) and drawn by plotters'
//! `ab_glyph` feature, so the plots need no system font and no fontconfig.
//!
//! Plots go to `<results>/plots/<name>.png`, overwritten by each run. A plot that cannot be
//! drawn prints a warning and the benchmark goes on (see [`save`]): its figures are in the
//! table and the JSON record already.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (1200, 720);
/// The font family the plots' text is drawn with (DejaVu Sans is registered under it).
const FONT: &str = "sans-serif";
/// Points a [`Distribution`] keeps for its body; its top 1 % keeps as many again.
const POINTS: usize = 1_000;
/// A log x axis is used when the largest value is at least this multiple of the smallest.
const LOG_SPAN: f64 = 30.0;
/// Line colours, one per series in turn, as 0xRRGGBB (the Tableau 10 palette).
const COLORS: [u32; 8] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf,
];
/// Colour of baselines and targets (marks and baseline bars).
const GREY: RGBColor = RGBColor(110, 110, 110);

/// The colour of the `i`th series.
fn color(i: usize) -> RGBColor {
    let [_, r, g, b] = COLORS[i % COLORS.len()].to_be_bytes();
    RGBColor(r, g, b)
}

/// Draws the legend of `chart`'s series, `labels`, in the corner of the plotting area
/// where it hides the fewest of `points` (the lower right on a tie).
fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    labels: &[String],
    points: impl Iterator<Item = (f64, f64)>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    // The legend's size, estimated from its 18 px font.
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let (width, height) = (chars as i32 * 10 + 60, labels.len() as i32 * 24 + 20);
    let mut hidden = [0usize; 4];
    for (x, y) in points.map(|p| chart.backend_coord(&p)) {
        let (l, r) = (x <= xs.start + width, x >= xs.end - width);
        let (t, b) = (y <= ys.start + height, y >= ys.end - height);
        for (n, inside) in hidden.iter_mut().zip([r && b, l && t, r && t, l && b]) {
            *n += usize::from(inside);
        }
    }
    let best = (0..4).min_by_key(|i| hidden[*i]).unwrap_or(0);
    let corner = [LowerRight, UpperLeft, UpperRight, LowerLeft][best].clone();
    let mut style = chart.configure_series_labels();
    style.position(corner).label_font((FONT, 18));
    style.background_style(WHITE.mix(0.9));
    style.border_style(BLACK).draw()?;
    Ok(())
}

/// Draws one plot into `<results>/plots/<name>.png` with `draw` and prints its path. A plot
/// that fails to draw, even by panicking inside `plotters`, is only a warning line: the
/// benchmark goes on.
pub fn save(results: &Path, name: &str, draw: impl FnOnce(&Path) -> anyhow::Result<()>) {
    let dir = results.join("plots");
    let path = dir.join(format!("{name}.png"));
    // DejaVu Sans is registered as FONT once per process.
    static FONT_LOADED: OnceLock<bool> = OnceLock::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let font = dejavu::sans::regular();
        let loaded =
            FONT_LOADED.get_or_init(|| register_font(FONT, FontStyle::Normal, font).is_ok());
        anyhow::ensure!(*loaded, "the embedded font could not be loaded");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        draw(&path)
    }));
    match outcome {
        Ok(Ok(())) => println!("plot: {}", path.display()),
        Ok(Err(e)) => println!("warning: plot {} not drawn: {e:#}", path.display()),
        Err(_) => println!(
            "warning: plot {} not drawn: plotters panicked",
            path.display()
        ),
    }
}

/// A latency distribution reduced to a bounded number of points for a CDF: every sample
/// when there are few, else [`POINTS`] evenly spaced ranks for the body and as many for
/// the top 1 %, so the tail keeps its shape.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    /// Samples it was made of.
    count: usize,
    /// (value in ms, % of the samples at or below it), ascending.
    points: Vec<(f64, f64)>,
}

impl Distribution {
    /// From latencies in microseconds sorted in ascending order (as
    /// [`crate::common::Latency::from_micros`] leaves them).
    pub fn from_sorted_micros(sorted: &[u32]) -> Self {
        Self::from_sorted(sorted.len(), |i| f64::from(sorted[i]) / 1000.0)
    }

    /// From values in ms, in any order; values that are not numbers are left out.
    pub fn from_ms(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Self::from_sorted(sorted.len(), |i| sorted[i])
    }

    fn from_sorted(count: usize, value: impl Fn(usize) -> f64) -> Self {
        let even = |from: usize, to: usize| {
            let span = to - from;
            let n = span.min(POINTS);
            (0..n).map(move |k| from + k * span / n.max(1))
        };
        let tail = count - count.div_ceil(100);
        let mut ranks: Vec<usize> = even(0, tail).chain(even(tail, count)).collect();
        if count > 0 && ranks.last() != Some(&(count - 1)) {
            ranks.push(count - 1);
        }
        ranks.dedup();
        let points = ranks
            .into_iter()
            .map(|r| (value(r), 100.0 * (r + 1) as f64 / count as f64))
            .collect();
        Distribution { count, points }
    }

    /// The CDF as a staircase from 0 %: each value rises from the previous percentile.
    fn stairs(&self, floor: f64) -> Vec<(f64, f64)> {
        let mut line = Vec::with_capacity(self.points.len() * 2);
        let mut below = 0.0;
        for &(ms, percent) in &self.points {
            let ms = ms.max(floor);
            line.push((ms, below));
            line.push((ms, percent));
            below = percent;
        }
        line
    }
}

/// A number with three significant digits (every digit of the integer part), at most
/// three decimals and no trailing zeros: `0.25`, `7.27`, `85.3`, `1500`.
fn short(value: f64) -> String {
    let magnitude = value.abs().log10().floor();
    let decimals = if magnitude.is_finite() {
        (2.0 - magnitude).clamp(0.0, 3.0)
    } else {
        0.0
    };
    let text = format!("{value:.*}", decimals as usize);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A latency CDF: one staircase per named distribution (ms on x, percentile of the samples
/// on y) and a dashed grey vertical line per mark (a baseline or a target, in ms), each
/// named in the legend. The x axis is logarithmic (see [`log_axis`]) when the values span
/// [`LOG_SPAN`] or more; linear otherwise, from 0 unless every value is far from it.
pub fn latency_cdf(
    path: &Path,
    title: &str,
    x_desc: &str,
    lines: &[(&str, &Distribution)],
    marks: &[(&str, f64)],
) -> anyhow::Result<()> {
    let ends = lines
        .iter()
        .flat_map(|(_, d)| d.points.first().into_iter().chain(d.points.last()));
    let values = ends.map(|p| p.0).chain(marks.iter().map(|m| m.1));
    let (mut lo, mut lo_positive, mut hi) = (f64::INFINITY, f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite()) {
        (lo, hi) = (lo.min(v), hi.max(v));
        if v > 0.0 {
            lo_positive = lo_positive.min(v);
        }
    }
    anyhow::ensure!(hi > 0.0, "no sample above 0 ms to plot");
    let area = BitMapBackend::new(path, SIZE).into_drawing_area();
    area.fill(&WHITE)?;
    if hi / lo_positive >= LOG_SPAN {
        // Values at 0 are drawn at the left edge.
        let (from, to, labelled, light) = log_axis(lo_positive, hi);
        let x_desc = match x_desc.strip_suffix(')') {
            Some(head) => format!("{head}, log scale)"),
            None => format!("{x_desc} (log scale)"),
        };
        let x = (from..to)
            .log_scale()
            .with_key_points(labelled)
            .with_light_points(light);
        draw_cdf(&area, title, &x_desc, x, from, lines, marks)?;
    } else {
        // From 0 unless every value is far from it: then the spread is what shows.
        let margin = (hi - lo) * 0.1;
        let from = if lo > hi / 4.0 { lo - margin } else { 0.0 };
        let to = hi + margin.max(hi * 0.02);
        draw_cdf(&area, title, x_desc, from..to, from, lines, marks)?;
    }
    area.present()?;
    Ok(())
}

/// A log axis around `lo..hi` (both above 0): from a 1, 2 or 5 times a power of ten to
/// another, labelled at 1, 2 and 5 times each power of ten (only at 1 over more than
/// four), with light lines at each digit. Returns (from, to, labelled, light).
fn log_axis(lo: f64, hi: f64) -> (f64, f64, Vec<f64>, Vec<f64>) {
    let first_decade = 10f64.powf(lo.log10().floor());
    let last_decade = 10f64.powf(hi.log10().floor());
    let from = [5.0, 2.0, 1.0]
        .map(|n| n * first_decade)
        .into_iter()
        .find(|v| *v <= lo)
        .unwrap_or(first_decade);
    let to = [1.0, 2.0, 5.0, 10.0]
        .map(|n| n * last_decade)
        .into_iter()
        .find(|v| *v >= hi)
        .unwrap_or(10.0 * last_decade);
    let decades = (last_decade / first_decade).log10().round() as i32;
    let ticks = |digits: &[f64]| -> Vec<f64> {
        (0..=decades + 1)
            .flat_map(|d| digits.iter().map(move |n| first_decade * 10f64.powi(d) * n))
            .filter(|v| *v >= from * 0.999 && *v <= to * 1.001)
            .collect()
    };
    let labelled = &[1.0, 2.0, 5.0][..if decades > 4 { 1 } else { 3 }];
    let digits = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    (from, to, ticks(labelled), ticks(&digits))
}

/// The CDF on the x axis `x` (linear or logarithmic); values are drawn at least at `floor`.
fn draw_cdf<X>(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    x_desc: &str,
    x: X,
    floor: f64,
    lines: &[(&str, &Distribution)],
    marks: &[(&str, f64)],
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 26))
        .margin(24)
        .x_label_area_size(64)
        .y_label_area_size(84)
        .build_cartesian_2d(x, 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("percentile (% of samples at or below)")
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 16))
        .max_light_lines(4)
        .axis_desc_style((FONT, 18))
        .draw()?;
    let stairs: Vec<Vec<(f64, f64)>> = lines.iter().map(|(_, d)| d.stairs(floor)).collect();
    let mut labels = Vec::new();
    // What the legend should hide the least of: the lines, and the marks top to bottom.
    let mut covered = stairs.concat();
    for (i, ((name, distribution), stairs)) in lines.iter().zip(&stairs).enumerate() {
        let style = color(i).stroke_width(2);
        labels.push(format!("{name} (n={})", distribution.count));
        chart
            .draw_series(LineSeries::new(stairs.iter().copied(), style))?
            .label(labels[i].as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    for (name, ms) in marks {
        let ms = ms.max(floor);
        let style = GREY.stroke_width(2);
        let line = [(ms, 0.0), (ms, 100.0)];
        labels.push(name.to_string());
        covered.extend((0..=10).map(|y| (ms, f64::from(y) * 10.0)));
        chart
            .draw_series(DashedLineSeries::new(line, 10, 6, style))?
            .label(*name)
            .legend(move |(x, y)| DashedPathElement::new([(x, y), (x + 24, y)], 7, 3, style));
    }
    legend(&mut chart, &labels, covered.into_iter())?;
    Ok(())
}

/// Named series over time, a line with a dot per point: x in seconds from 0 and y from 0,
/// as `x_desc` and `y_desc` say.
pub fn over_time(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[(&str, &[(f64, f64)])],
) -> anyhow::Result<()> {
    let points = || lines.iter().flat_map(|(_, points)| points.iter());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max);
    anyhow::ensure!(x_max > 0.0, "no point to plot");
    let area = BitMapBackend::new(path, SIZE).into_drawing_area();
    area.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, (FONT, 26))
        .margin(24)
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(0.0..x_max.ceil(), 0.0..(y_max * 1.15).max(1.0))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .label_style((FONT, 16))
        .max_light_lines(4)
        .axis_desc_style((FONT, 18))
        .draw()?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color(i).filled())))?;
    }
    let labels: Vec<String> = lines.iter().map(|l| l.0.to_owned()).collect();
    legend(&mut chart, &labels, points().copied())?;
    area.present()?;
    Ok(())
}

/// One bar per named value, in order, each labelled with its value and `unit`; the bar
/// at `baseline` (if any) is grey, the others take the first series colour.
pub fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    unit: &str,
    bars: &[(&str, f64)],
    baseline: Option<usize>,
) -> anyhow::Result<()> {
    let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    anyhow::ensure!(!bars.is_empty() && y_max.is_finite(), "no value to plot");
    let area = BitMapBackend::new(path, SIZE).into_drawing_area();
    area.fill(&WHITE)?;
    // One segment per bar (an integer range counts its end).
    let last = u32::try_from(bars.len() - 1).context("too many bars")?;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, (FONT, 26))
        .margin(24)
        .x_label_area_size(48)
        .y_label_area_size(96)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..(y_max * 1.15).max(1e-3))?;
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => bars.get(*i as usize).map_or("", |b| b.0).to_owned(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .y_label_formatter(&|v| short(*v))
        .label_style((FONT, 16))
        .max_light_lines(1)
        .axis_desc_style((FONT, 18))
        .draw()?;
    let text = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, (_, value)) in (0..=last).zip(bars) {
        let fill = baseline
            .filter(|b| *b == i as usize)
            .map_or(color(0), |_| GREY);
        let corners = [
            (SegmentValue::Exact(i), 0.0),
            (SegmentValue::Exact(i + 1), *value),
        ];
        let mut bar = Rectangle::new(corners, fill.filled());
        bar.set_margin(0, 0, 24, 24);
        chart.draw_series([bar])?;
        let caption = format!("{} {unit}", short(*value));
        let at = (SegmentValue::CenterOf(i), *value);
        chart.draw_series([Text::new(caption, at, text.clone())])?;
    }
    area.present()?;
    Ok(())
}

#[cfg(test)]
mod tests;
