package org.groupnorm.dl4j.examples.support;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.knowm.xchart.CategorySeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * The paper's picture (its figure 1): test error vs batch size, one line per normalization, batch sizes from large to
 * small at even spacing, as a PNG (XChart).
 */
public final class ErrorChart {

    private ErrorChart() {
    }

    /** Writes {@code file} (a .png name). */
    public static void writePng(ResultsTable results, String title, Path file) throws IOException {
        System.setProperty("java.awt.headless", "true");   // servers and CI have no display
        // One process trains each run, so the batch size is per step (the paper's "images per worker").
        CategoryChart chart = new CategoryChartBuilder().width(720).height(480).title(title)
                .xAxisTitle("batch size (images per training step)")
                .yAxisTitle("test error (%); the axis does not start at 0").build();
        chart.getStyler().setDefaultSeriesRenderStyle(CategorySeries.CategorySeriesRenderStyle.Line);
        chart.getStyler().setOverlapped(true);   // all lines on the category centres, not side by side
        chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideS);   // never over a data point
        chart.getStyler().setLegendLayout(Styler.LegendLayout.Horizontal);
        chart.getStyler().setYAxisDecimalPattern("0.0");
        List<String> batches = new ArrayList<>();
        results.batchSizes().forEach(size -> batches.add(String.valueOf(size)));
        for (SmallResNet.Norm norm : results.norms()) {
            List<Double> errors = new ArrayList<>();
            for (int size : results.batchSizes()) {
                errors.add(results.find(norm, size).map(r -> 100 * r.testError()).orElse(null));
            }
            chart.addSeries(norm.title(), batches, errors).setMarker(SeriesMarkers.CIRCLE);
        }
        String name = file.toString();
        String base = name.endsWith(".png") ? name.substring(0, name.length() - 4) : name;
        BitmapEncoder.saveBitmap(chart, base, BitmapEncoder.BitmapFormat.PNG);
    }
}
