package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.ResultsTable;
import org.groupnorm.dl4j.examples.support.RunResult;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The whole experiment end to end on a tiny slice of the embedded data: both norms, two batch sizes. */
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

        assertEquals(4, results.runs().size());
        for (RunResult run : results.runs()) {
            assertEquals(240, run.trainExamples());
            assertEquals(100, run.testExamples());
            assertEquals(0.1 * run.batchSize() / 32, run.learningRate(), 1e-12);
            assertTrue(run.testError() >= 0 && run.testError() <= 1, run.toString());
            assertTrue(Double.isFinite(run.finalTrainLoss()), run.toString());
        }
        String text = printed.toString(StandardCharsets.UTF_8);
        assertTrue(text.contains("GN - BN") && text.contains("results.csv"), text);
        assertEquals(5, Files.readAllLines(out.resolve("results.csv")).size());
        assertTrue(Files.size(out.resolve("results.png")) > 1000);
    }

    @Test
    void sameSeedGivesTheSameResults() throws IOException {
        String[] args = {"--data", FashionMnist.EMBEDDED_FOLDER, "--train-per-class", "8", "--test-per-class", "5",
                "--epochs", "1", "--batch-sizes", "4", "--out", out.toString(), "--seed", "3"};
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        ResultsTable first = SmallBatchResNetExample.run(ExperimentOptions.parse(args), quiet);
        ResultsTable second = SmallBatchResNetExample.run(ExperimentOptions.parse(args), quiet);
        assertEquals(2, first.runs().size(), "BN and GN at batch 4");   // else the loop below proves nothing
        assertEquals(first.runs().size(), second.runs().size());
        for (int i = 0; i < first.runs().size(); i++) {
            RunResult a = first.runs().get(i);
            RunResult b = second.runs().get(i);
            assertEquals(a.testError(), b.testError(), 0.0, a.norm());
            assertEquals(a.finalTrainLoss(), b.finalTrainLoss(), 0.0, a.norm());
        }
    }
}
