//! Unit tests of the plots: bounded distributions, axes, and a PNG of each kind drawn
//! with the embedded font.

use super::*;

#[test]
fn a_distribution_keeps_few_samples_whole_and_bounds_many() {
    let few = Distribution::from_ms(&[3.0, 1.0, f64::NAN, 2.0]);
    assert_eq!(few.count, 3);
    assert_eq!(
        few.points,
        [(1.0, 100.0 / 3.0), (2.0, 200.0 / 3.0), (3.0, 100.0)]
    );
    let many = Distribution::from_sorted_micros(&(0..1_000_000).collect::<Vec<u32>>());
    assert!(many.points.len() <= 2 * POINTS + 1);
    assert_eq!(many.points.last(), Some(&(999.999, 100.0)));
    let tail = many.points.iter().filter(|p| p.1 > 99.0).count();
    assert!(tail >= POINTS - 1, "the top 1 % keeps its shape: {tail}");
}

#[test]
fn axes_start_and_end_at_short_labels() {
    let (from, to, labelled, _) = log_axis(0.23, 21.0);
    assert_eq!((from, to, labelled.len()), (0.2, 50.0, 8), "{labelled:?}");
    let (_, _, wide, _) = log_axis(0.01, 5_000_000.0);
    assert_eq!(wide.len(), 9, "only powers of ten over many: {wide:?}");
    let labels = [0.25, 3.0, 85.308, 1500.4, 0.0001, 0.0].map(short);
    assert_eq!(labels, ["0.25", "3", "85.3", "1500", "0", "0"]);
}

#[test]
fn every_kind_of_plot_draws_a_png_with_the_embedded_font() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = Distribution::from_ms(&[0.2, 1.0, 5.0, 40.0]);
    let narrow = Distribution::from_ms(&[1.0, 1.5, 2.0]);
    register_font().expect("font");
    let [cdf, time, bar] = ["cdf", "time", "bars"].map(|n| dir.path().join(format!("{n}.png")));
    latency_cdf(&cdf, "t", "ms", &[("a", &wide)], &[("target", 2.0)]).expect("log cdf");
    latency_cdf(&cdf, "t", "ms", &[("b", &narrow)], &[]).expect("linear cdf");
    over_time(&time, "t", "s", "n", &[("a", &[(0.5, 1.0), (1.5, 2.0)])]).expect("time");
    bars(&bar, "t", "ms", "ms", &[("a", 1.0), ("b", 3.0)], Some(0)).expect("bars");
    for png in [cdf, time, bar] {
        let bytes = std::fs::read(&png).expect("written");
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
    }
    save(dir.path(), "none", |path| {
        latency_cdf(path, "t", "ms", &[], &[])
    });
    assert!(
        !dir.path().join("plots/none.png").exists(),
        "nothing to draw"
    );
}
