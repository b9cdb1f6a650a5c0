//! PNG plots of what a scenario measured, drawn with `plotters` on its bitmap backend:
//! latency CDFs, series over time and bars.
//!
//! Text is DejaVu Sans, embedded in the binary (the `dejavu` crate) and drawn by plotters'
//! `ab_glyph` feature, so the plots need no system font and no fontconfig.
//!
//! Plots go to `<results>/plots/<name>.png`, overwritten by each run. A plot that cannot be
//! drawn prints a warning and the benchmark goes on (see [`save`]): its figures are in the
//! table and the JSON record already.

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
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
/// Line colours, one per series in turn (the Tableau 10 palette).
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
/// Colour of baselines and targets (marks and baseline bars).
const GREY: RGBColor = RGBColor(110, 110, 110);

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The colour of the `i`th series.
fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Registers DejaVu Sans as [`FONT`], once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    anyhow::ensure!(registered, "the embedded font could not be loaded");
    Ok(())
}

/// Draws one plot into `<results>/plots/<name>.png` with `draw` and prints its path. A plot
/// that fails to draw, even by panicking inside `plotters`, is only a warning line: the
/// benchmark goes on.
pub fn save(results: &Path, name: &str, draw: impl FnOnce(&Path) -> anyhow::Result<()>) {
    let dir = results.join("plots");
    let path = dir.join(format!("{name}.png"));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        register_font()?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        draw(&path)
    }));
    match outcome {
        Ok(Ok(())) => println!("plot: {}", path.display()),
        Ok(Err(e)) => println!("warning: plot {} not drawn: {e:#}", path.display()),
        Err(_) => println!(
            "warning: plot {} not drawn: the plotting library panicked",
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

    /// Samples it was made of.
    pub fn count(&self) -> usize {
        self.count
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

/// A number as short as it reads well on an axis: `0.25`, `3`, `1500`.
fn short(value: f64) -> String {
    let text = if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A latency CDF: one staircase per named distribution (ms on x, percentile of the samples
/// on y) and a dashed vertical line per mark (a baseline or a target, in ms). The x axis
/// is logarithmic, from a power of ten to a power of ten, when the values span more than
/// [`LOG_SPAN`]; linear from 0 otherwise.
pub fn latency_cdf(
    path: &Path,
    title: &str,
    x_desc: &str,
    lines: &[(&str, &Distribution)],
    marks: &[(&str, f64)],
) -> anyhow::Result<()> {
    let values = lines
        .iter()
        .flat_map(|(_, d)| d.points.first().into_iter().chain(d.points.last()))
        .map(|(ms, _)| *ms)
        .chain(marks.iter().map(|(_, ms)| *ms))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (if v > 0.0 { lo.min(v) } else { lo }, hi.max(v))
    });
    anyhow::ensure!(hi > 0.0, "no sample above 0 ms to plot");
    let area = BitMapBackend::new(path, SIZE).into_drawing_area();
    area.fill(&WHITE)?;
    if lo.is_finite() && hi / lo >= LOG_SPAN {
        let from = 10f64.powf(lo.log10().floor());
        let to = 10f64.powf(hi.log10().ceil());
        let x_desc = format!("{x_desc} (log scale)");
        draw_cdf(
            &area,
            title,
            &x_desc,
            (from..to).log_scale(),
            from,
            lines,
            marks,
        )?;
    } else {
        draw_cdf(&area, title, x_desc, 0.0..hi * 1.05, 0.0, lines, marks)?;
    }
    area.present()?;
    Ok(())
}

/// The CDF on the x axis `x` (linear or logarithmic); values are drawn at least at `floor`.
fn draw_cdf<X>(
    area: &Area,
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
        .axis_desc_style((FONT, 18))
        .draw()?;
    for (i, (name, ms)) in marks.iter().enumerate() {
        let ms = ms.max(floor);
        let style = GREY.stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            [(ms, 0.0), (ms, 100.0)],
            10,
            6,
            style,
        ))?;
        let text = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        let y = 98.0 - 5.0 * i as f64;
        chart.draw_series([Text::new(format!(" {name}"), (ms, y), text)])?;
    }
    for (i, (name, distribution)) in lines.iter().enumerate() {
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(distribution.stairs(floor), style))?
            .label(format!("{name} (n={})", distribution.count()))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Named series over time, a line with a dot per point: x in seconds from the start of
/// `x_desc`'s window, y as `y_desc` says, from 0.
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
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
    let count = u32::try_from(bars.len()).map_err(|_| anyhow!("too many bars"))?;
    let area = BitMapBackend::new(path, SIZE).into_drawing_area();
    area.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, (FONT, 26))
        .margin(24)
        .x_label_area_size(48)
        .y_label_area_size(96)
        .build_cartesian_2d((0..count).into_segmented(), 0.0..(y_max * 1.15).max(1e-3))?;
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
        .axis_desc_style((FONT, 18))
        .draw()?;
    let text = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, (_, value)) in (0..count).zip(bars) {
        let fill = if baseline == Some(i as usize) {
            GREY
        } else {
            color(0)
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), *value),
            ],
            fill.filled(),
        );
        bar.set_margin(0, 0, 24, 24);
        chart.draw_series([bar])?;
        let caption = format!("{} {unit}", short(*value));
        chart.draw_series([Text::new(
            caption,
            (SegmentValue::CenterOf(i), *value),
            text.clone(),
        )])?;
    }
    area.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_keeps_few_samples_whole_and_bounds_many() {
        let few = Distribution::from_ms(&[3.0, 1.0, f64::NAN, 2.0]);
        assert_eq!(few.count(), 3);
        assert_eq!(
            few.points,
            [(1.0, 100.0 / 3.0), (2.0, 200.0 / 3.0), (3.0, 100.0)]
        );
        let sorted: Vec<u32> = (0..1_000_000).collect();
        let many = Distribution::from_sorted_micros(&sorted);
        assert!(many.points.len() <= 2 * POINTS + 1);
        assert_eq!(many.points.last(), Some(&(999.999, 100.0)));
        let tail = many.points.iter().filter(|p| p.1 > 99.0).count();
        assert!(tail >= POINTS - 1, "the top 1 % keeps its shape: {tail}");
        assert!(Distribution::from_ms(&[]).points.is_empty());
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(3.0), "3");
        assert_eq!(short(1500.4), "1500");
        assert_eq!(short(0.0001), "0");
    }

    #[test]
    fn every_kind_of_plot_draws_a_png_with_the_embedded_font() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wide = Distribution::from_ms(&[0.2, 1.0, 5.0, 40.0]);
        let narrow = Distribution::from_ms(&[1.0, 1.5, 2.0]);
        register_font().expect("font");
        let cdf = dir.path().join("cdf.png");
        latency_cdf(&cdf, "t", "ms", &[("a", &wide)], &[("target", 2.0)]).expect("log cdf");
        latency_cdf(&cdf, "t", "ms", &[("b", &narrow)], &[]).expect("linear cdf");
        let time = dir.path().join("time.png");
        over_time(
            &time,
            "t",
            "s",
            "per s",
            &[("a", &[(0.5, 10.0), (1.5, 12.0)])],
        )
        .expect("time");
        let bar = dir.path().join("bars.png");
        bars(&bar, "t", "ms", "ms", &[("a", 1.0), ("b", 3.0)], Some(0)).expect("bars");
        for png in [cdf, time, bar] {
            let bytes = std::fs::read(&png).expect("written");
            assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
        }
        save(dir.path(), "empty", |path| {
            latency_cdf(path, "t", "ms", &[], &[])
        });
        assert!(
            !dir.path().join("plots/empty.png").exists(),
            "a failed plot is skipped"
        );
    }
}
