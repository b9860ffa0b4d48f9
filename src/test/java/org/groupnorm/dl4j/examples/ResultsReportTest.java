package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;
import org.groupnorm.dl4j.examples.support.ErrorChart;
import org.groupnorm.dl4j.examples.support.ResultsTable;
import org.groupnorm.dl4j.examples.support.RunResult;
import org.groupnorm.dl4j.examples.support.SmallResNet.Norm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The experiment's outputs: the paper-style table, the CSV and the PNG chart. */
class ResultsReportTest {

    @TempDir
    Path dir;

    private static ResultsTable sample() {
        ResultsTable results = new ResultsTable();
        results.add(new RunResult(Norm.BATCH, 2, 0.00625, 3, 3000, 2000, 0.3470, 0.91, 100, 60));
        results.add(new RunResult(Norm.GROUP, 2, 0.00625, 3, 3000, 2000, 0.2410, 0.62, 80, 75));
        results.add(new RunResult(Norm.GROUP_WS, 2, 0.00625, 3, 3000, 2000, 0.2305, 0.60, 90, 70));
        results.add(new RunResult(Norm.BATCH, 32, 0.1, 3, 3000, 2000, 0.2360, 0.55, 20, 300));
        results.add(new RunResult(Norm.GROUP, 32, 0.1, 3, 3000, 2000, 0.2412, 0.58, 18, 330));
        results.add(new RunResult(Norm.GROUP_WS, 32, 0.1, 3, 3000, 2000, 0.2300, 0.50, 19, 320));
        results.add(new RunResult(Norm.GROUP, 16, 0.05, 3, 3000, 2000, 0.2420, 0.57, 19, 320));
        return results;
    }

    @Test
    void tableListsBatchSizesLargestFirstWithEachNormMinusBn() {
        String[] lines = sample().format().split("\n");
        assertEquals(4, lines.length, String.join("\n", lines));
        assertArrayEquals(new String[]{"batch", "BN", "err", "%", "GN", "err", "%", "GNWS", "err", "%", "GN", "-", "BN",
                "GNWS", "-", "BN"}, lines[0].trim().split("\\s+"));
        assertArrayEquals(new String[]{"32", "23.60", "24.12", "23.00", "+0.52", "-0.60"},
                lines[1].trim().split("\\s+"));
        assertArrayEquals(new String[]{"16", "-", "24.20", "-", "-", "-"}, lines[2].trim().split("\\s+"));
        assertArrayEquals(new String[]{"2", "34.70", "24.10", "23.05", "-10.60", "-11.65"},
                lines[3].trim().split("\\s+"));
    }

    @Test
    void withoutBatchNormThereIsNoDifferenceColumn() {
        ResultsTable results = new ResultsTable();
        sample().runs().stream().filter(r -> r.norm() != Norm.BATCH).forEach(results::add);
        String[] lines = results.format().split("\n");
        assertArrayEquals(new String[]{"32", "24.12", "23.00"}, lines[1].trim().split("\\s+"));
    }

    @Test
    void csvHasAHeaderAndOneRowPerRun() throws IOException {
        Path csv = dir.resolve("results.csv");
        sample().writeCsv(csv);
        List<String> lines = Files.readAllLines(csv);
        assertEquals(8, lines.size());
        String[] header = lines.get(0).split(",");
        String[] first = lines.get(1).split(",");
        assertEquals(header.length, first.length);
        assertEquals("BN", first[0]);
        assertEquals(2, Integer.parseInt(first[1]));
        assertEquals(0.00625, Double.parseDouble(first[2]), 1e-12);
        assertEquals(34.70, Double.parseDouble(first[List.of(header).indexOf("test_error_percent")]), 1e-9);
        assertEquals("GNWS", lines.get(3).split(",")[0]);
        assertEquals(sample().format(), ResultsTable.readCsv(csv).format());
    }

    @Test
    void aCsvWithAnUnknownNormIsRejectedNamingTheFile() throws IOException {
        Path csv = dir.resolve("results.csv");
        sample().writeCsv(csv);
        Files.writeString(csv, Files.readString(csv).replace("GNWS,", "LN,"));
        IOException e = assertThrows(IOException.class, () -> ResultsTable.readCsv(csv));
        assertTrue(e.getMessage().contains(csv + ": unknown norm LN"), e.getMessage());
    }

    @Test
    void chartIsAReadablePng() throws IOException {
        Path png = dir.resolve("results.png");
        ErrorChart.writePng(sample(), "test", png);
        byte[] bytes = Files.readAllBytes(png);
        assertArrayEquals(new byte[]{(byte) 0x89, 'P', 'N', 'G'}, java.util.Arrays.copyOf(bytes, 4));
        BufferedImage image = ImageIO.read(png.toFile());
        assertEquals(720, image.getWidth());
        assertEquals(480, image.getHeight());
        // Not blank: a plot has more than a couple of colours.
        java.util.Set<Integer> colours = new java.util.HashSet<>();
        for (int y = 0; y < image.getHeight(); y += 4) {
            for (int x = 0; x < image.getWidth(); x += 4) {
                colours.add(image.getRGB(x, y));
            }
        }
        assertTrue(colours.size() > 5, colours.size() + " colours");
    }
}
