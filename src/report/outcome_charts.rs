//! The outcomes report's charts, drawn with plotters into SVG strings like the model card's.
//! Each function takes plain series, so the report decides which figures have enough data.

use plotters::prelude::*;

use super::charts::{
    axis_max, segment_label, shorten, svg, BAR, CAPTION_FONT, HEIGHT, REFERENCE, WIDTH,
};
use super::ReportError;

/// Colours of successive tiers, A first.
const TIER_COLORS: [RGBColor; 4] = [
    RGBColor(23, 112, 58),
    RGBColor(31, 90, 166),
    RGBColor(214, 140, 20),
    RGBColor(166, 27, 27),
];
const WON: RGBColor = RGBColor(23, 112, 58);
const LOST: RGBColor = RGBColor(166, 27, 27);
const LIMIT: RGBColor = RGBColor(166, 27, 27);

/// One tier's observed and predicted win rate per month, by index into the month labels.
/// A month with too few deals is left out of the series.
pub struct TierSeries {
    pub tier: String,
    pub observed: Vec<(usize, f64)>,
    pub predicted: Vec<(usize, f64)>,
}

/// Draws each tier's observed win rate per month as a solid line and its predicted rate (the
/// mean probability) as a dashed line of the same colour.
pub fn tier_win_rates(months: &[String], tiers: &[TierSeries]) -> Result<String, ReportError> {
    let last = months.len().saturating_sub(1).max(1);
    svg(
        "tier win rate per month",
        (WIDTH + 120, HEIGHT + 40),
        |root| {
            let mut chart = ChartBuilder::on(root)
                .caption("Win rate per tier and month", CAPTION_FONT)
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(52)
                .build_cartesian_2d(0usize..last, 0f64..1f64)?;
            chart
                .configure_mesh()
                .x_labels(months.len().clamp(1, 12))
                .x_label_formatter(&|index| months.get(*index).cloned().unwrap_or_default())
                .x_desc("Month closed")
                .y_desc("Win rate (solid observed, dashed predicted)")
                .draw()?;
            for (index, tier) in tiers.iter().enumerate() {
                let color = TIER_COLORS[index % TIER_COLORS.len()];
                chart
                    .draw_series(LineSeries::new(
                        tier.observed.clone(),
                        color.stroke_width(2),
                    ))?
                    .label(format!("Tier {}", tier.tier))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                chart.draw_series(PointSeries::of_element(
                    tier.observed.clone(),
                    3,
                    color.filled(),
                    &|coord, size, style| {
                        EmptyElement::at(coord) + Circle::new((0, 0), size, style)
                    },
                ))?;
                chart.draw_series(DashedLineSeries::new(
                    tier.predicted.clone(),
                    6,
                    4,
                    color.stroke_width(1),
                ))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(REFERENCE)
                .background_style(WHITE)
                .draw()?;
            Ok(())
        },
    )
}

/// Draws a value per period as bars with the configured limit as a horizontal line. Periods
/// without a value get no bar.
fn bars_with_limit(
    chart_name: &'static str,
    caption: &str,
    y_desc: &str,
    labels: &[String],
    values: &[Option<f64>],
    limit: f64,
    floor: f64,
) -> Result<String, ReportError> {
    let top = axis_max(values.iter().flatten().copied().chain([limit]), floor);
    svg(chart_name, (WIDTH, HEIGHT), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d((0..labels.len()).into_segmented(), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .x_label_formatter(&|value| segment_label(value, labels))
            .draw()?;
        chart.draw_series(values.iter().enumerate().filter_map(|(i, value)| {
            let value = (*value)?;
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), value),
                ],
                BAR.filled(),
            );
            bar.set_margin(0, 0, 6, 6);
            Some(bar)
        }))?;
        chart
            .draw_series(LineSeries::new(
                [
                    (SegmentValue::Exact(0), limit),
                    (SegmentValue::Exact(labels.len()), limit),
                ],
                LIMIT.stroke_width(2),
            ))?
            .label(format!("Limit {limit}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LIMIT.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(REFERENCE)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    })
}

/// Expected calibration error per month against `[outcomes] max_calibration_error`.
pub fn monthly_calibration(
    months: &[String],
    errors: &[Option<f64>],
    limit: f64,
) -> Result<String, ReportError> {
    bars_with_limit(
        "calibration per month",
        "Calibration error per month",
        "Expected calibration error",
        months,
        errors,
        limit,
        0.2,
    )
}

/// ROC AUC per quarter against `[outcomes] min_auc`.
pub fn quarterly_auc(
    quarters: &[String],
    aucs: &[Option<f64>],
    limit: f64,
) -> Result<String, ReportError> {
    bars_with_limit(
        "AUC per quarter",
        "ROC AUC per quarter",
        "ROC AUC",
        quarters,
        aucs,
        limit,
        1.0,
    )
}

/// Population stability index per feature as horizontal bars, largest at the top, with the
/// `[outcomes] max_psi` limit as a vertical line.
pub fn feature_psi(rows: &[(String, f64)], limit: f64) -> Result<String, ReportError> {
    // Row 0 is drawn at the bottom, so the first (largest) feature gets the last row.
    let labels: Vec<String> = rows.iter().rev().map(|(name, _)| shorten(name)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    // Estimates 7 pixels per character at the axis font size, capped so the bars keep room.
    let label_width = (longest as u32 * 7 + 16).clamp(60, 300);
    let height = (rows.len() as u32 * 28 + 110).max(200);
    let right = axis_max(rows.iter().map(|(_, psi)| *psi).chain([limit]), 0.1);
    svg("feature drift", (WIDTH + label_width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Feature drift (population stability index)", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0f64..right, (0..rows.len()).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len().max(1))
            .x_desc("PSI of open records now against the baseline")
            .y_label_formatter(&|value| segment_label(value, &labels))
            .draw()?;
        let count = rows.len();
        chart.draw_series(rows.iter().enumerate().map(|(i, (_, psi))| {
            let row = count - 1 - i;
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row)),
                    (*psi, SegmentValue::Exact(row + 1)),
                ],
                BAR.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))?;
        chart.draw_series(LineSeries::new(
            [
                (limit, SegmentValue::Exact(0)),
                (limit, SegmentValue::Exact(count)),
            ],
            LIMIT.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Score paths of sampled records as (days relative to the close, score) points: won
/// records in green, lost ones in red.
pub fn score_paths(
    won: &[Vec<(f64, f64)>],
    lost: &[Vec<(f64, f64)>],
) -> Result<String, ReportError> {
    let earliest = won
        .iter()
        .chain(lost)
        .flatten()
        .map(|(days, _)| *days)
        .fold(-30.0, f64::min);
    svg("score history", (WIDTH + 120, HEIGHT + 40), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Score history before the close", CAPTION_FONT)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(earliest..0f64, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("Days before the close")
            .y_desc("Score")
            .draw()?;
        for (paths, color, label) in [(won, WON, "Won"), (lost, LOST, "Lost")] {
            for (index, path) in paths.iter().enumerate() {
                let series = chart.draw_series(LineSeries::new(path.clone(), color))?;
                if index == 0 {
                    series
                        .label(label)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .border_style(REFERENCE)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_svg() {
        let months = vec!["2026-01".to_string(), "2026-02".to_string()];
        let tiers = vec![TierSeries {
            tier: "A".to_string(),
            observed: vec![(0, 0.5), (1, 0.75)],
            predicted: vec![(0, 0.6), (1, 0.7)],
        }];
        let svgs = [
            tier_win_rates(&months, &tiers).expect("tier chart"),
            monthly_calibration(&months, &[Some(0.05), None], 0.1).expect("calibration chart"),
            quarterly_auc(&["2026-Q1".to_string()], &[Some(0.7)], 0.65).expect("auc chart"),
            feature_psi(&[("beds".to_string(), 0.3)], 0.25).expect("psi chart"),
            score_paths(&[vec![(-20.0, 40.0), (0.0, 70.0)]], &[vec![(-10.0, 30.0)]])
                .expect("history chart"),
        ];
        for text in svgs {
            assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
        }
    }
}
