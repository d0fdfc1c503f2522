//! SVG plots of a run, written next to its results: backlog drain rates per relay, and live
//! latency percentiles per relay. One panel per scenario, logarithmic axes (classic polling's
//! few events a second and the tailer's hundred thousand share an axis).

use std::path::Path;

use plotters::prelude::*;

use crate::rows::Row;

const PANEL_WIDTH: u32 = 330;
const HEIGHT: u32 = 420;
const LEGEND_HEIGHT: u32 = 110;

/// `<stem>-drain.svg` and `<stem>-live.svg` in `dir`, from a run's `rows` on the broker that
/// `broker_label` names.
pub fn write(rows: &[Row], stem: &str, broker_label: &str, dir: &Path) -> anyhow::Result<()> {
    let relays = relays(rows);
    let drains = panels(rows, &relays, false, |r| Some(vec![r.rate()]));
    if !drains.is_empty() {
        draw(
            &dir.join(format!("{stem}-drain.svg")),
            &format!("Drain rate, events/s ({broker_label})"),
            &drains,
            &relays,
            "bars: events/s (classic polling: rate in its bounded window)",
        )?;
    }
    let live = panels(rows, &relays, true, |r| {
        let [p50, p99, _] = r.latency_ms?;
        Some(vec![p50, p99])
    });
    if !live.is_empty() {
        draw(
            &dir.join(format!("{stem}-live.svg")),
            &format!("Commit-to-consume latency, ms ({broker_label})"),
            &live,
            &relays,
            "per relay: left bar p50, right bar p99",
        )?;
    }
    Ok(())
}

/// One panel per scenario (live or not), each relay's bars from `values`.
fn panels(
    rows: &[Row],
    relays: &[String],
    live: bool,
    values: impl Fn(&Row) -> Option<Vec<f64>>,
) -> Vec<Panel> {
    scenarios(rows, live)
        .into_iter()
        .map(|scenario| Panel {
            bars: rows
                .iter()
                .filter(|r| r.scenario == scenario)
                .filter_map(|r| Some((index(relays, &r.relay), values(r)?)))
                .collect(),
            title: short(&scenario),
        })
        .collect()
}

struct Panel {
    title: String,
    /// (relay index, values drawn side by side)
    bars: Vec<(usize, Vec<f64>)>,
}

fn relays(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if !names.contains(&r.relay) {
            names.push(r.relay.clone());
        }
    }
    names
}

fn scenarios(rows: &[Row], live: bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.is_live() == live) {
        if !names.contains(&r.scenario) {
            names.push(r.scenario.clone());
        }
    }
    names
}

fn index(relays: &[String], relay: &str) -> usize {
    relays.iter().position(|r| r == relay).unwrap_or(0)
}

fn short(scenario: &str) -> String {
    let s = scenario
        .trim_start_matches("backlog: ")
        .trim_start_matches("live: ");
    s.split(" (achieved").next().unwrap_or(s).to_owned()
}

fn draw(
    path: &Path,
    title: &str,
    panels: &[Panel],
    relays: &[String],
    note: &str,
) -> anyhow::Result<()> {
    let width = PANEL_WIDTH * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width.max(700), HEIGHT + LEGEND_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(plot_error)?;
    let (charts, legend) = root.split_vertically(HEIGHT - 30);
    let values = panels
        .iter()
        .flat_map(|p| p.bars.iter().flat_map(|(_, v)| v.iter().copied()));
    let max = values.fold(1.0f64, f64::max);
    let (lo, hi) = (0.1f64, 10f64.powf(max.log10().ceil() + 0.3));
    for (panel, area) in panels
        .iter()
        .zip(charts.split_evenly((1, panels.len().max(1))))
    {
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 13))
            .margin(8)
            .x_label_area_size(8)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..relays.len() as f64, (lo..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(plot_error)?;
        for (relay, values) in &panel.bars {
            let color = Palette99::pick(*relay);
            let width = 0.8 / values.len() as f64;
            for (k, v) in values.iter().enumerate() {
                let x0 = *relay as f64 + 0.1 + k as f64 * width;
                let style = if k + 1 == values.len() {
                    color.filled()
                } else {
                    color.mix(0.45).filled()
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, lo), (x0 + width * 0.9, v.max(lo))],
                        style,
                    )))
                    .map_err(plot_error)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        label(*v),
                        (x0, (v.max(lo) * 1.25).min(hi)),
                        ("sans-serif", 10),
                    )))
                    .map_err(plot_error)?;
            }
        }
    }
    for (i, relay) in relays.iter().enumerate() {
        let y = 8 + 18 * i as i32;
        legend
            .draw(&Rectangle::new(
                [(20, y), (32, y + 12)],
                Palette99::pick(i).filled(),
            ))
            .map_err(plot_error)?;
        legend
            .draw(&Text::new(relay.as_str(), (40, y), ("sans-serif", 13)))
            .map_err(plot_error)?;
    }
    legend
        .draw(&Text::new(
            note,
            (20, 8 + 18 * relays.len() as i32),
            ("sans-serif", 12),
        ))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}
