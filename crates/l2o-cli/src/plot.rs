//! SVG plots (plotters, SVG backend): median over the batch per optimizer, with the interquartile band.

use std::path::Path;

use anyhow::{Result, anyhow};
use l2o_optim::{Trace, summarize};
use plotters::prelude::*;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One curve: (step, median, q1, q3) with non-positive or non-finite values dropped (log axis).
fn series(values: &[Vec<f64>]) -> Vec<(f64, f64, f64, f64)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(k, v)| {
            let s = summarize(v);
            (s.median.is_finite() && s.median > 0.0)
                .then(|| (k as f64, s.median, s.q1.max(s.median * 1e-12), s.q3))
        })
        .collect()
}

/// Curves of (x, median, q1, q3) on a log y axis, with the [q1, q3] band shaded.
pub fn xy_plot(
    curves: &[(String, Vec<(f64, f64, f64, f64)>)],
    title: &str,
    xlabel: &str,
    ylabel: &str,
    path: &Path,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let xmax = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ys = curves
        .iter()
        .flat_map(|c| c.1.iter().flat_map(|p| [p.1, p.2, p.3]));
    let (mut ymin, mut ymax) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    if !ymin.is_finite() || ymax <= 0.0 {
        (ymin, ymax) = (1e-3, 1.0);
    }
    let ymin = ymin.max(ymax * 1e-18) * 0.5;
    let ymax = ymax * 2.0;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, (ymin..ymax).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(ylabel)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3)).collect();
        band.extend(pts.iter().rev().map(|p| (p.0, p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Loss vs step: median over the batch with the interquartile band, one curve per optimizer.
pub fn loss_plot(traces: &[Trace], title: &str, path: &Path) -> Result<()> {
    let curves: Vec<_> = traces
        .iter()
        .map(|t| (t.optimizer.clone(), series(&t.f)))
        .collect();
    xy_plot(&curves, title, "step", "loss (median, IQR band)", path)
}

/// ‖∇f‖ vs step.
pub fn gnorm_plot(traces: &[Trace], title: &str, path: &Path) -> Result<()> {
    let curves: Vec<_> = traces
        .iter()
        .map(|t| (t.optimizer.clone(), series(&t.gnorm)))
        .collect();
    xy_plot(&curves, title, "step", "‖∇f‖ (median, IQR band)", path)
}
