package org.groupnorm.dl4j.examples.support;

import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.TreeSet;

/**
 * The experiment's results: the paper-style table (batch size x {BN, GN} test error, and GN - BN) and a CSV with
 * every run's numbers.
 */
public final class ResultsTable {

    static final String CSV_HEADER = "norm,batch_size,learning_rate,epochs,train_examples,test_examples,"
            + "test_error_percent,final_train_loss,train_seconds,examples_per_second";

    private final List<RunResult> runs = new ArrayList<>();

    public void add(RunResult run) {
        runs.add(run);
    }

    public List<RunResult> runs() {
        return List.copyOf(runs);
    }

    /** The run of a norm at a batch size, if there was one. */
    public Optional<RunResult> find(String norm, int batchSize) {
        return runs.stream().filter(r -> r.norm().equals(norm) && r.batchSize() == batchSize).findFirst();
    }

    /** Batch sizes run, largest first (the paper's column order). */
    public List<Integer> batchSizes() {
        TreeSet<Integer> sizes = new TreeSet<>(Comparator.reverseOrder());
        runs.forEach(r -> sizes.add(r.batchSize()));
        return new ArrayList<>(sizes);
    }

    /** Test error in percent by batch size, one row per batch size, with GN - BN where both ran. */
    public String format() {
        StringBuilder out = new StringBuilder();
        out.append(String.format(Locale.ROOT, "%-10s %10s %10s %10s%n", "batch", "BN err %", "GN err %",
                "GN - BN"));
        for (int batch : batchSizes()) {
            Optional<RunResult> bn = find("BN", batch);
            Optional<RunResult> gn = find("GN", batch);
            out.append(String.format(Locale.ROOT, "%-10d %10s %10s %10s%n", batch, percent(bn), percent(gn),
                    bn.isPresent() && gn.isPresent() ? String.format(Locale.ROOT, "%+.2f",
                            100 * (gn.get().testError() - bn.get().testError())) : "-"));
        }
        return out.toString();
    }

    public void writeCsv(Path file) throws IOException {
        try (Writer out = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
            out.write(CSV_HEADER + "\n");
            for (RunResult r : runs) {
                out.write(String.format(Locale.ROOT, "%s,%d,%.6g,%d,%d,%d,%.2f,%.5f,%.1f,%.1f%n", r.norm(),
                        r.batchSize(), r.learningRate(), r.epochs(), r.trainExamples(), r.testExamples(),
                        100 * r.testError(), r.finalTrainLoss(), r.trainSeconds(), r.examplesPerSecond()));
            }
        }
    }

    /** Reads a file {@link #writeCsv} wrote (to redraw a chart or compare runs). */
    public static ResultsTable readCsv(Path file) throws IOException {
        List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        if (lines.isEmpty() || !lines.get(0).equals(CSV_HEADER)) {
            throw new IOException(file + ": expected the header " + CSV_HEADER);
        }
        ResultsTable results = new ResultsTable();
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.split(",");
            results.add(new RunResult(f[0], Integer.parseInt(f[1]), Double.parseDouble(f[2]), Integer.parseInt(f[3]),
                    Integer.parseInt(f[4]), Integer.parseInt(f[5]), Double.parseDouble(f[6]) / 100,
                    Double.parseDouble(f[7]), Double.parseDouble(f[8]), Double.parseDouble(f[9])));
        }
        return results;
    }

    private static String percent(Optional<RunResult> run) {
        return run.map(r -> String.format(Locale.ROOT, "%.2f", 100 * r.testError())).orElse("-");
    }
}
