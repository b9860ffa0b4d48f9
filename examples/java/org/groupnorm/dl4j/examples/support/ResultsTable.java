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
 * The experiment's results: the paper-style table (batch size x norm test error, and each norm against BN) and a CSV
 * with every run's numbers.
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
    public Optional<RunResult> find(SmallResNet.Norm norm, int batchSize) {
        return runs.stream().filter(r -> r.norm() == norm && r.batchSize() == batchSize).findFirst();
    }

    /** Batch sizes run, largest first (the paper's column order). */
    public List<Integer> batchSizes() {
        TreeSet<Integer> sizes = new TreeSet<>(Comparator.reverseOrder());
        runs.forEach(r -> sizes.add(r.batchSize()));
        return new ArrayList<>(sizes);
    }

    /** The norms run, in {@link SmallResNet.Norm}'s order (BN first). */
    public List<SmallResNet.Norm> norms() {
        return runs.stream().map(RunResult::norm).distinct().sorted().toList();
    }

    /**
     * Test error in percent by batch size, one row per batch size and one column per norm, then each other norm's
     * difference to BN where both ran (when BN ran at all).
     */
    public String format() {
        List<SmallResNet.Norm> norms = norms();
        List<SmallResNet.Norm> compared = norms.contains(SmallResNet.Norm.BATCH)
                ? norms.stream().filter(n -> n != SmallResNet.Norm.BATCH).toList() : List.of();
        StringBuilder out = new StringBuilder(String.format(Locale.ROOT, "%-10s", "batch"));
        norms.forEach(n -> out.append(String.format(Locale.ROOT, " %11s", n.label() + " err %")));
        compared.forEach(n -> out.append(String.format(Locale.ROOT, " %11s", n.label() + " - BN")));
        out.append(String.format("%n"));
        for (int batch : batchSizes()) {
            out.append(String.format(Locale.ROOT, "%-10d", batch));
            norms.forEach(n -> out.append(String.format(Locale.ROOT, " %11s", percent(find(n, batch)))));
            Optional<RunResult> bn = find(SmallResNet.Norm.BATCH, batch);
            for (SmallResNet.Norm norm : compared) {
                Optional<RunResult> other = find(norm, batch);
                out.append(String.format(Locale.ROOT, " %11s", bn.isPresent() && other.isPresent()
                        ? String.format(Locale.ROOT, "%+.2f", 100 * (other.get().testError() - bn.get().testError()))
                        : "-"));
            }
            out.append(String.format("%n"));
        }
        return out.toString();
    }

    public void writeCsv(Path file) throws IOException {
        try (Writer out = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
            out.write(CSV_HEADER + "\n");
            for (RunResult r : runs) {
                out.write(String.format(Locale.ROOT, "%s,%d,%.6g,%d,%d,%d,%.2f,%.5f,%.1f,%.1f%n", r.norm().label(),
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
            SmallResNet.Norm norm = SmallResNet.Norm.fromLabel(f[0])
                    .orElseThrow(() -> new IOException(file + ": unknown norm " + f[0] + " in " + line));
            results.add(new RunResult(norm, Integer.parseInt(f[1]), Double.parseDouble(f[2]), Integer.parseInt(f[3]),
                    Integer.parseInt(f[4]), Integer.parseInt(f[5]), Double.parseDouble(f[6]) / 100,
                    Double.parseDouble(f[7]), Double.parseDouble(f[8]), Double.parseDouble(f[9])));
        }
        return results;
    }

    private static String percent(Optional<RunResult> run) {
        return run.map(r -> String.format(Locale.ROOT, "%.2f", 100 * r.testError())).orElse("-");
    }
}
