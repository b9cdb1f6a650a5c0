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
    let results = dir.path();
    save(results, "log", |p| {
        latency_cdf(p, "t", "ms", &[("a", &wide)], &[("m", 2.0)])
    });
    save(results, "linear", |p| {
        latency_cdf(p, "t", "ms", &[("b", &narrow)], &[])
    });
    save(results, "time", |p| {
        over_time(p, "t", "s", "n", &[("a", &[(0.5, 1.0), (1.5, 2.0)])])
    });
    save(results, "bars", |p| {
        bars(p, "t", "ms", "ms", &[("a", 1.0), ("b", 3.0)], Some(0))
    });
    for name in ["log", "linear", "time", "bars"] {
        let png = std::fs::read(results.join(format!("plots/{name}.png"))).expect(name);
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    save(results, "none", |path| {
        latency_cdf(path, "t", "ms", &[], &[])
    });
    assert!(!results.join("plots/none.png").exists(), "nothing to draw");
}
