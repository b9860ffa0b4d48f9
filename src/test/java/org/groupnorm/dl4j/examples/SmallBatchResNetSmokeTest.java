package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.ResultsTable;
import org.groupnorm.dl4j.examples.support.RunResult;
import org.groupnorm.dl4j.examples.support.SmallResNet.Norm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The whole experiment end to end on a tiny slice of the embedded data: all three norms, two batch sizes. */
class SmallBatchResNetSmokeTest {

    @TempDir
    Path out;

    @Test
    void runsEndToEndAndWritesTableCsvAndChart() throws IOException {
        ExperimentOptions options = ExperimentOptions.parse("--data", FashionMnist.EMBEDDED_FOLDER,
                "--train-per-class", "24", "--test-per-class", "10", "--epochs", "1", "--batch-sizes", "4,16",
                "--out", out.toString(), "--progress-seconds", "1");
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        ResultsTable results = SmallBatchResNetExample.run(options, new PrintStream(printed, true,
                StandardCharsets.UTF_8));

        assertEquals(6, results.runs().size());
        for (RunResult run : results.runs()) {
            assertEquals(240, run.trainExamples());
            assertEquals(100, run.testExamples());
            assertEquals(0.1 * run.batchSize() / 32, run.learningRate(), 1e-12);
            assertEquals(240 / run.batchSize() * run.batchSize() / run.trainSeconds(), run.examplesPerSecond(),
                    1e-9 * run.examplesPerSecond(), "full batches only");
            assertTrue(run.testError() >= 0 && run.testError() <= 1, run.toString());
            assertTrue(Double.isFinite(run.finalTrainLoss()), run.toString());
        }
        String text = printed.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("GN - BN") && text.contains("GNWS - BN") && text.contains("results.csv"), text);
        assertEquals(7, Files.readAllLines(out.resolve("results.csv")).size());
        assertTrue(Files.size(out.resolve("results.png")) > 1000);
    }

    /** --add-to: one arm re-run, the others taken from an earlier CSV of the same settings. */
    @Test
    void addsTheRunsOfAnEarlierCsvThatItDidNotRepeat() throws IOException {
        String[] common = {"--data", FashionMnist.EMBEDDED_FOLDER, "--train-per-class", "8", "--test-per-class", "5",
                "--epochs", "1", "--batch-sizes", "4", "--progress-seconds", "100"};
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        Path earlier = out.resolve("earlier");
        ResultsTable first = SmallBatchResNetExample.run(ExperimentOptions.parse(concat(common, "--norms", "BN,GN",
                "--out", earlier.toString())), quiet);
        ResultsTable added = SmallBatchResNetExample.run(ExperimentOptions.parse(concat(common, "--norms", "GN,GNWS",
                "--out", out.resolve("added").toString(), "--add-to", earlier.resolve("results.csv").toString())),
                quiet);
        assertEquals(List.of(Norm.BATCH, Norm.GROUP, Norm.GROUP_WS), added.norms());
        assertEquals(first.find(Norm.BATCH, 4).get().testError(), added.find(Norm.BATCH, 4).get().testError(), 1e-9);
        assertEquals(3, ResultsTable.readCsv(out.resolve("added").resolve("results.csv")).runs().size());

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SmallBatchResNetExample.run(
                ExperimentOptions.parse("--data", FashionMnist.EMBEDDED_FOLDER, "--train-per-class", "9",
                        "--test-per-class", "5", "--epochs", "1", "--batch-sizes", "4", "--norms", "GNWS",
                        "--out", out.resolve("other").toString(), "--add-to", earlier.resolve("results.csv").toString()),
                quiet));
        assertTrue(e.getMessage().contains("its BN batch 4 run trained 1 epochs on 80 images and tested on 50; "
                + "this run: 1, 90 and 50"), e.getMessage());
    }

    private static String[] concat(String[] first, String... second) {
        String[] all = Arrays.copyOf(first, first.length + second.length);
        System.arraycopy(second, 0, all, first.length, second.length);
        return all;
    }

    @Test
    void sameSeedGivesTheSameResults() throws IOException {
        String[] args = {"--data", FashionMnist.EMBEDDED_FOLDER, "--train-per-class", "8", "--test-per-class", "5",
                "--epochs", "1", "--batch-sizes", "4", "--out", out.toString(), "--seed", "3"};
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        ResultsTable first = SmallBatchResNetExample.run(ExperimentOptions.parse(args), quiet);
        ResultsTable second = SmallBatchResNetExample.run(ExperimentOptions.parse(args), quiet);
        assertEquals(3, first.runs().size(), "BN, GN and GNWS at batch 4");   // else the loop below proves nothing
        assertEquals(first.runs().size(), second.runs().size());
        for (int i = 0; i < first.runs().size(); i++) {
            RunResult a = first.runs().get(i);
            RunResult b = second.runs().get(i);
            assertEquals(a.testError(), b.testError(), 0.0, a.norm().label());
            assertEquals(a.finalTrainLoss(), b.finalTrainLoss(), 0.0, a.norm().label());
        }
    }
}
