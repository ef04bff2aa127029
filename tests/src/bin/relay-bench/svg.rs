//! A small SVG plot of the ramps: CPU (% of a core) and loss (%) against concurrent calls, one
//! line per run, gateway in blue, rtpengine in orange, Janus in green.

use std::fmt::Write as _;
use std::path::Path;

/// (system, [(calls, cpu %, loss %)]) per run.
pub(crate) type Series<'a> = Vec<(&'a str, Vec<(usize, f64, f64)>)>;

pub(crate) fn write(path: &Path, runs: &Series<'_>) -> std::io::Result<()> {
    let max_calls = runs
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_cpu = runs
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(10.0_f64, f64::max)
        .ceil();
    let max_loss = runs
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.2))
        .fold(2.0_f64, f64::max)
        .ceil();
    let (width, height, left, top, plot_w, plot_h) = (720.0, 590.0, 70.0, 40.0, 600.0, 190.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    for (panel, (title, max, index)) in [
        (
            "CPU of the system under test (% of one core)",
            max_cpu,
            1usize,
        ),
        ("Packet loss (%)", max_loss, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let y0 = top + panel as f64 * (plot_h + 80.0);
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{title}</text>"#,
            y0 - 10.0
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
        );
        for tick in 0..=4 {
            let value = max * f64::from(tick) / 4.0;
            let y = y0 + plot_h - plot_h * f64::from(tick) / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{value:.1}</text>"#,
                left - 6.0,
                y + 4.0
            );
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/>"##,
                left + plot_w
            );
        }
        for tick in 0..=4 {
            let calls = max_calls * f64::from(tick) / 4.0;
            let x = left + plot_w * f64::from(tick) / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{x}" y="{}" text-anchor="middle">{calls:.0}</text>"#,
                y0 + plot_h + 16.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">concurrent calls</text>"#,
            left + plot_w / 2.0,
            y0 + plot_h + 34.0
        );
        for (system, points) in runs {
            let colour = colour(system);
            let coordinates: Vec<String> = points
                .iter()
                .map(|point| {
                    let value = if index == 1 { point.1 } else { point.2 };
                    let x = left + plot_w * point.0 as f64 / max_calls;
                    let y = y0 + plot_h - plot_h * (value / max).min(1.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" opacity="0.8"/>"#,
                coordinates.join(" ")
            );
        }
    }
    let legend_y = height - 20.0;
    let mut x = left;
    for (system, label) in [
        ("gateway", "sylkrtc-gateway"),
        ("rtpengine", "rtpengine (userspace)"),
        ("janus", "Janus (SIP plugin)"),
    ] {
        if !runs.iter().any(|(name, _)| *name == system) {
            continue;
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{}" stroke-width="3"/>"#,
            x + 30.0,
            colour(system)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{label}</text>"#,
            x + 36.0,
            legend_y + 4.0
        );
        x += 190.0;
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}

fn colour(system: &str) -> &'static str {
    match system {
        "gateway" => "#1f5fbf",
        "janus" => "#2e9e44",
        _ => "#e07b00",
    }
}
