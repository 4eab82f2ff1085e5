//! SVG plots (plotters, SVG backend): median over the batch per optimizer, with the interquartile band.

use std::path::Path;

use anyhow::{Result, anyhow};
use l2o_optim::{Trace, summarize};
use plotters::prelude::*;

const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
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
    // A log axis shows positive finite values only: a diverged run's +∞ (or a NaN) would make the axis range
    // infinite (and plotters' key points loop allocating), so such points are left out of the plot.
    let shown = |p: &&(f64, f64, f64, f64)| {
        [p.0, p.1, p.2, p.3].iter().all(|v| v.is_finite()) && p.1 > 0.0 && p.2 > 0.0 && p.3 > 0.0
    };
    let curves: Vec<(String, Vec<(f64, f64, f64, f64)>)> = curves
        .iter()
        .map(|(l, c)| (l.clone(), c.iter().filter(shown).copied().collect()))
        .collect();
    let curves = curves.as_slice();
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

/// Box plots, one per group: the box spans the quartiles with the median drawn across, whiskers reach the most
/// extreme values within 1.5·IQR, points beyond are drawn as outliers; a dashed line marks y = 0.
pub fn box_plot(
    groups: &[(String, Vec<f64>)],
    title: &str,
    ylabel: &str,
    path: &Path,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((0.0f64, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let ng = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..ng - 0.5, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    let names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len().max(1))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(ylabel)
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(-0.5, 0.0), (ng - 0.5, 0.0)],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
    for (i, (_, v)) in groups.iter().enumerate() {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let s = summarize(&v);
        let iqr = s.q3 - s.q1;
        let (wlo, whi) = (s.q1 - 1.5 * iqr, s.q3 + 1.5 * iqr);
        let lo_w = v.iter().copied().find(|&x| x >= wlo).unwrap_or(s.q1);
        let hi_w = v.iter().rev().copied().find(|&x| x <= whi).unwrap_or(s.q3);
        let x = i as f64;
        let color = COLORS[i % COLORS.len()];
        let (l, r) = (x - 0.25, x + 0.25);
        chart
            .draw_series([
                Rectangle::new([(l, s.q1), (r, s.q3)], color.mix(0.3).filled()),
                Rectangle::new([(l, s.q1), (r, s.q3)], color.stroke_width(1)),
            ])
            .map_err(|e| err(&e))?;
        let lines = [
            vec![(l, s.median), (r, s.median)],
            vec![(x, s.q3), (x, hi_w)],
            vec![(x, s.q1), (x, lo_w)],
            vec![(x - 0.1, hi_w), (x + 0.1, hi_w)],
            vec![(x - 0.1, lo_w), (x + 0.1, lo_w)],
        ];
        for (j, pts) in lines.into_iter().enumerate() {
            let w = if j == 0 { 3 } else { 1 };
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(w)))
                .map_err(|e| err(&e))?;
        }
        chart
            .draw_series(
                v.iter()
                    .filter(|&&y| y < lo_w || y > hi_w)
                    .map(|&y| Circle::new((x, y), 3, color.stroke_width(1))),
            )
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A diverged run's +∞, a NaN and non-positive values are left out of a log plot (an infinite axis range
    /// made plotters allocate without end); the finite points are still drawn.
    #[test]
    fn xy_plot_leaves_out_what_a_log_axis_cannot_show() {
        let dir = std::env::temp_dir().join(format!("l2o-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let pts = vec![
            (0.0, 1.0, 1.0, 1.0),
            (1.0, f64::INFINITY, f64::INFINITY, f64::INFINITY),
            (2.0, f64::NAN, 0.5, 0.5),
            (3.0, 0.0, 0.0, 0.0),
            (4.0, 0.25, 0.2, 0.3),
        ];
        super::xy_plot(&[("c".into(), pts)], "t", "x", "y", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.len() < 200_000, "{} bytes", svg.len());
        std::fs::remove_dir_all(&dir).ok();
    }
}
