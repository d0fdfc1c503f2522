//! SVG plots of a run, written next to its results: backlog drain rates per relay, and live
//! latency (p50 and p99) per relay. One panel per scenario, stacked, each a horizontal bar per
//! relay with its name beside it and its value at the bar's end. Drain rates share a linear
//! axis (the differences that matter are tens of percent); latencies a logarithmic one (the
//! tailer's milliseconds and classic polling's tens of seconds in one figure). The width fits
//! the docs' column, so the figures are read at the size they are shown.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::rows::Row;

/// The docs' column on GitHub is about 880 px wide.
const WIDTH: u32 = 880;
const TITLE_HEIGHT: u32 = 36;
/// One relay's row, and what a panel needs besides (its caption and its axis).
const ROW_HEIGHT: u32 = 30;
const PANEL_EXTRA: u32 = 62;
const NOTE_HEIGHT: u32 = 28;
/// Left of the bars: the relays' names.
const NAME_WIDTH: u32 = 270;
const FONT: &str = "sans-serif";

/// `<stem>-drain.svg` and `<stem>-live.svg` in `dir`, from a run's `rows` on the broker that
/// `broker_label` names.
pub fn write(rows: &[Row], stem: &str, broker_label: &str, dir: &Path) -> anyhow::Result<()> {
    let relays = relays(rows);
    let drains = panels(rows, &relays, false, |r| Some(vec![r.rate()]));
    if !drains.is_empty() {
        draw(
            &dir.join(format!("{stem}-drain.svg")),
            &format!("Drain rate, events/s, higher is better ({broker_label})"),
            &drains,
            &relays,
            Axis::linear(&drains),
            "events/s to the last ack (classic polling: its rate in a bounded window)",
        )?;
    }
    let live = panels(rows, &relays, true, |r| {
        let [p50, p99, _] = r.latency_ms?;
        Some(vec![p50, p99])
    });
    if !live.is_empty() {
        draw(
            &dir.join(format!("{stem}-live.svg")),
            &format!("Commit-to-consume latency, ms, lower is better ({broker_label})"),
            &live,
            &relays,
            Axis::log(&live),
            "per relay: upper, lighter bar p50; lower, darker bar p99",
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
                .filter(|r| r.is_live() == live && short(&r.scenario) == scenario)
                .filter_map(|r| Some((index(relays, &r.relay), values(r)?)))
                .collect(),
            title: scenario,
        })
        .filter(|p| !p.bars.is_empty())
        .collect()
}

struct Panel {
    title: String,
    /// (relay index, values drawn one under the other)
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
        // A live scenario's name carries each relay's achieved rate: one panel for all.
        let name = short(&r.scenario);
        if !names.contains(&name) {
            names.push(name);
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

/// A relay's name as it fits beside the bars: a long parenthetical is cut.
fn display_name(relay: &str) -> String {
    const MAX: usize = 40;
    if relay.chars().count() <= MAX {
        return relay.to_owned();
    }
    let cut: String = relay.chars().take(MAX - 2).collect();
    let closes = cut.contains('(') && !cut.contains(')');
    format!("{}…{}", cut.trim_end(), if closes { ")" } else { "" })
}

/// Where a value sits on the x axis: linear from 0, or logarithmic (the coordinate is then
/// the value's log10), with at most `ticks` tick marks (a log axis: one per decade, as the
/// coordinates' round step is then 1).
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: usize,
}

impl Axis {
    /// 0 to a little above the largest value (room for its label).
    fn linear(panels: &[Panel]) -> Axis {
        let max = values(panels).fold(1.0f64, f64::max);
        Axis {
            log: false,
            lo: 0.0,
            hi: max * 1.12,
            ticks: 7,
        }
    }

    /// The power of ten below the smallest value to room above the largest, a tick per decade.
    fn log(panels: &[Panel]) -> Axis {
        let min = values(panels).fold(f64::INFINITY, f64::min);
        let max = values(panels).fold(1.0f64, f64::max);
        let lo = if min.is_finite() {
            min.log10().floor().max(-1.0)
        } else {
            -1.0
        };
        let hi = max.log10() + 0.45;
        let ticks = (hi.floor() - lo) as usize + 1;
        Axis {
            log: true,
            lo,
            hi,
            ticks,
        }
    }

    /// A value's x coordinate (values below the axis' start sit at its start).
    fn at(&self, v: f64) -> f64 {
        let x = if self.log { v.max(1e-9).log10() } else { v };
        x.max(self.lo)
    }

    /// The value at an x coordinate, for the tick labels.
    fn value(&self, x: f64) -> f64 {
        if self.log {
            10f64.powf(x)
        } else {
            x
        }
    }
}

fn values(panels: &[Panel]) -> impl Iterator<Item = f64> + '_ {
    panels
        .iter()
        .flat_map(|p| p.bars.iter().flat_map(|(_, v)| v.iter().copied()))
        .filter(|v| *v > 0.0)
}

fn draw(
    path: &Path,
    title: &str,
    panels: &[Panel],
    relays: &[String],
    axis: Axis,
    note: &str,
) -> anyhow::Result<()> {
    let heights: Vec<u32> = panels
        .iter()
        .map(|p| PANEL_EXTRA + ROW_HEIGHT * p.bars.len() as u32)
        .collect();
    let height = TITLE_HEIGHT + heights.iter().sum::<u32>() + NOTE_HEIGHT;
    let canvas = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    canvas.fill(&WHITE).map_err(plot_error)?;
    canvas
        .draw(&Text::new(title, (12, 10), (FONT, 19)))
        .map_err(plot_error)?;
    let mut top = TITLE_HEIGHT;
    for (panel, h) in panels.iter().zip(&heights) {
        let area = canvas.clone().shrink((0, top), (WIDTH, *h));
        draw_panel(&canvas, &area, panel, relays, &axis)?;
        top += h;
    }
    canvas
        .draw(&Text::new(
            note,
            (NAME_WIDTH as i32, (height - NOTE_HEIGHT + 6) as i32),
            (FONT, 13),
        ))
        .map_err(plot_error)?;
    canvas.present().map_err(plot_error)?;
    Ok(())
}

/// One scenario: a row per relay that ran it, its name on the left (drawn on `canvas`, whose
/// coordinates are the image's), its bars and values on the right.
fn draw_panel<DB: DrawingBackend>(
    canvas: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    relays: &[String],
    axis: &Axis,
) -> anyhow::Result<()> {
    let n = panel.bars.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 15))
        .margin_left(NAME_WIDTH)
        .margin_right(24)
        .margin_top(4)
        .x_label_area_size(22)
        .build_cartesian_2d(axis.lo..axis.hi, 0f64..n)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_labels(axis.ticks)
        .x_label_formatter(&|x| tick_label(axis.value(*x)))
        .x_label_style((FONT, 12))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    for (row, (relay, values)) in panel.bars.iter().enumerate() {
        // The first relay at the top.
        let base = n - 1.0 - row as f64;
        let color = Palette99::pick(*relay);
        let band = 0.76 / values.len() as f64;
        for (k, v) in values.iter().enumerate() {
            let y1 = base + 0.88 - k as f64 * band;
            let y0 = y1 - band * 0.92;
            let style = if k + 1 == values.len() {
                color.filled()
            } else {
                color.mix(0.45).filled()
            };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(axis.lo, y0), (axis.at(*v), y1)],
                    style,
                )))
                .map_err(plot_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label(*v),
                    (axis.at(*v) + (axis.hi - axis.lo) * 0.008, y1),
                    (FONT, 12),
                )))
                .map_err(plot_error)?;
        }
        let (_, y) = chart.backend_coord(&(axis.lo, base + 0.5));
        canvas
            .draw(&Text::new(
                display_name(&relays[*relay]),
                (8, y - 7),
                (FONT, 13),
            ))
            .map_err(plot_error)?;
    }
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

/// A tick mark's value: round numbers without decimals.
fn tick_label(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded >= 10_000.0 {
        format!("{}k", rounded / 1000.0)
    } else if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded}")
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}
