//! The model card's charts, drawn with plotters into SVG strings for inlining in the page.
//!
//! plotters' SVG backend escapes the text it writes, so feature names and tier labels are
//! passed to it unescaped.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::card::{CalibrationBin, FeatureWeight, LiftDecile, TierOutcome};
use super::ReportError;

pub(super) type ChartResult = Result<(), Box<dyn std::error::Error>>;

pub(super) const LINE: RGBColor = RGBColor(31, 90, 166);
pub(super) const BAR: RGBColor = RGBColor(74, 132, 199);
pub(super) const REFERENCE: RGBColor = RGBColor(150, 150, 150);
pub(super) const CAPTION_FONT: (&str, u32) = ("sans-serif", 18);
pub(super) const WIDTH: u32 = 520;
pub(super) const HEIGHT: u32 = 360;

/// Draws one chart of `size` into an SVG string.
pub(super) fn svg(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> ChartResult,
) -> Result<String, ReportError> {
    let mut text = String::new();
    let outcome = {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|err| err.into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|err| err.into()))
    };
    outcome.map_err(|err| ReportError::Chart {
        chart,
        message: err.to_string(),
    })?;
    Ok(text)
}

/// Upper end of a value axis: the largest value plus a tenth, or `floor` if that is larger.
pub(super) fn axis_max(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(floor, f64::max);
    if max > floor {
        max * 1.1
    } else {
        floor
    }
}

/// Mean predicted probability against the observed win rate per bin, with the diagonal of
/// perfect calibration.
pub fn calibration(bins: &[CalibrationBin]) -> Result<String, ReportError> {
    let points: Vec<(f64, f64)> = bins
        .iter()
        .filter_map(|bin| bin.mean_predicted.zip(bin.observed))
        .collect();
    svg("calibration", (WIDTH, HEIGHT + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Calibration on the holdout", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("Mean predicted probability")
            .y_desc("Observed win rate")
            .draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], REFERENCE))?
            .label("Perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], REFERENCE));
        chart
            .draw_series(LineSeries::new(points.clone(), LINE.stroke_width(2)))?
            .label("Model")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(2)));
        chart.draw_series(PointSeries::of_element(
            points,
            4,
            LINE.filled(),
            &|coord, size, style| EmptyElement::at(coord) + Circle::new((0, 0), size, style),
        ))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(REFERENCE)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    })
}

/// Lift per decile as bars, decile 1 being the highest-scored tenth, with the line of no lift.
pub fn lift(deciles: &[LiftDecile]) -> Result<String, ReportError> {
    let rows: Vec<(u32, f64)> = deciles
        .iter()
        .filter_map(|row| row.lift.map(|lift| (row.decile, lift)))
        .collect();
    let labels: Vec<String> = rows.iter().map(|(decile, _)| decile.to_string()).collect();
    let top = axis_max(rows.iter().map(|(_, lift)| *lift), 1.5);
    svg("lift", (WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Lift by decile", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d((0..rows.len()).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("Decile (1 = highest scores)")
            .y_desc("Lift")
            .x_label_formatter(&|value| segment_label(value, &labels))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, lift))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *lift),
                ],
                BAR.filled(),
            );
            bar.set_margin(0, 0, 4, 4);
            bar
        }))?;
        chart.draw_series(LineSeries::new(
            [
                (SegmentValue::Exact(0), 1.0),
                (SegmentValue::Exact(rows.len()), 1.0),
            ],
            REFERENCE.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Cumulative share of all wins captured by the top deciles, against random ordering.
pub fn cumulative_gain(deciles: &[LiftDecile]) -> Result<String, ReportError> {
    let mut points = vec![(0.0, 0.0)];
    points.extend(
        deciles
            .iter()
            .filter_map(|row| row.cumulative_gain.map(|g| (f64::from(row.decile), g))),
    );
    let last = points.iter().map(|(x, _)| *x).fold(10.0, f64::max);
    svg("cumulative gain", (WIDTH, HEIGHT + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Cumulative gain by decile", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..last, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("Deciles contacted, highest scores first")
            .y_desc("Share of wins captured")
            .draw()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (last, 1.0)], REFERENCE))?
            .label("Random order")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], REFERENCE));
        chart
            .draw_series(LineSeries::new(points.clone(), LINE.stroke_width(2)))?
            .label("Model")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(2)));
        chart.draw_series(PointSeries::of_element(
            points,
            3,
            LINE.filled(),
            &|coord, size, style| EmptyElement::at(coord) + Circle::new((0, 0), size, style),
        ))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(REFERENCE)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    })
}

/// Holdout win rate per tier, in the order the report lists the tiers.
pub fn tiers(tiers: &[TierOutcome]) -> Result<String, ReportError> {
    let rows: Vec<(&str, f64)> = tiers
        .iter()
        .filter_map(|row| row.win_rate.map(|rate| (row.tier.as_str(), rate)))
        .collect();
    let labels: Vec<String> = rows.iter().map(|(tier, _)| tier.to_string()).collect();
    let top = axis_max(rows.iter().map(|(_, rate)| *rate), 1.0);
    svg("tier win rate", (WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Holdout win rate per tier", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d((0..rows.len()).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("Tier")
            .y_desc("Win rate")
            .x_label_formatter(&|value| segment_label(value, &labels))
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, rate))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *rate),
                ],
                BAR.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        Ok(())
    })
}

/// Mean absolute contribution per feature as horizontal bars, largest at the top.
pub fn top_features(features: &[FeatureWeight]) -> Result<String, ReportError> {
    let rows: Vec<(&str, f64)> = features
        .iter()
        .filter_map(|row| {
            row.mean_abs_contribution
                .map(|value| (row.feature.as_str(), value))
        })
        .collect();
    // Row 0 is drawn at the bottom, so the first (largest) feature gets the last row.
    let labels: Vec<String> = rows.iter().rev().map(|(name, _)| shorten(name)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // Estimates 7 pixels per character at the axis font size, capped so the bars keep room.
    let label_width = (longest as u32 * 7 + 16).clamp(60, 300);
    let height = (rows.len() as u32 * 28 + 110).max(200);
    let right = axis_max(rows.iter().map(|(_, value)| *value), 0.0);
    let right = if right > 0.0 { right } else { 1.0 };
    svg("top features", (WIDTH + label_width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Top features by mean |contribution|", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0f64..right, (0..rows.len()).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len().max(1))
            .x_desc("Mean absolute contribution to the raw score")
            .y_label_formatter(&|value| segment_label(value, &labels))
            .draw()?;
        let count = rows.len();
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, value))| {
            let row = count - 1 - i;
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row)),
                    (*value, SegmentValue::Exact(row + 1)),
                ],
                BAR.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))?;
        Ok(())
    })
}

/// Returns the label at the centre of a bar segment. Other axis positions get no label.
pub(super) fn segment_label(value: &SegmentValue<usize>, labels: &[String]) -> String {
    match value {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Maximum axis label length in characters. The table under the chart has the full names.
const MAX_LABEL_CHARS: usize = 40;

/// Cuts `label` to [`MAX_LABEL_CHARS`], ending a cut label with an ellipsis.
pub(super) fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_string();
    }
    let mut short: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    short.push('…');
    short
}
