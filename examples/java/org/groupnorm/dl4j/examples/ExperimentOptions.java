package org.groupnorm.dl4j.examples;

import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;
import org.groupnorm.dl4j.examples.support.SmallResNet;

/**
 * The small-batch ResNet experiment's settings: defaults that finish in about 15 minutes on 2 CPU cores, and the
 * command-line flags that change them.
 */
public final class ExperimentOptions {

    static final List<Integer> DEFAULT_BATCH_SIZES = List.of(2, 4, 16, 32);
    static final int DEFAULT_EPOCHS = 3;
    /** 200 per class: 2,000 training images, what fits about 15 minutes for all 12 runs on 2 cores. */
    static final int DEFAULT_TRAIN_PER_CLASS = 200;
    /** 200 per class: 2,000 test images (the whole test part of the embedded subset). */
    static final int DEFAULT_TEST_PER_CLASS = 200;
    static final int DEFAULT_GROUPS = 8;
    static final long DEFAULT_SEED = 42;

    static final String USAGE = String.join("\n",
            "Small-batch ResNet: BatchNorm vs GroupNorm vs GroupNorm + Weight Standardization test error at several",
            "batch sizes on Fashion-MNIST.",
            "",
            "Flags (defaults in brackets):",
            "  --batch-sizes 2,4,16,32   batch sizes to train at; the learning rate is " + SmallResNet.BASE_LEARNING_RATE
                    + " x batch / " + SmallResNet.BASE_BATCH,
            "  --epochs N                epochs for every batch size [" + DEFAULT_EPOCHS + "]",
            "  --train-per-class N       training images per class, stratified [" + DEFAULT_TRAIN_PER_CLASS + "]",
            "  --test-per-class N        test images per class [" + DEFAULT_TEST_PER_CLASS + "]",
            "  --full                    every image the data folder holds (60k/10k with the Debian package)",
            "  --norms BN,GN,GNWS        which normalizations to run: BatchNorm, GroupNorm, GroupNorm after",
            "                            weight-standardized convolutions (GN+WS) [all three]",
            "  --groups G                GroupNorm groups per layer [" + DEFAULT_GROUPS + "]",
            "  --bn-decay D              BatchNorm running-statistics decay [0.9, DL4J's default]",
            "  --widths 16,32,64         channels of the three stages",
            "  --blocks N                residual blocks per stage [1]",
            "  --seed S                  weights and data order [" + DEFAULT_SEED + "]",
            "  --out DIR                 where results.csv and results.png go [target/small-batch-resnet]",
            "  --data DIR                Fashion-MNIST idx files (raw or .gz) [/usr/share/datasets/fashion-mnist,",
            "                            else the subset in examples/data/fashion-mnist-subset]",
            "  --add-to CSV              also report the runs of an earlier results.csv (same data and epochs) for",
            "                            the norms and batch sizes this run does not train",
            "  --progress-seconds S      interval of the progress lines [10]",
            "  --help");

    private List<Integer> batchSizes = DEFAULT_BATCH_SIZES;
    private List<SmallResNet.Norm> norms = List.of(SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP,
            SmallResNet.Norm.GROUP_WS);
    private int epochs = DEFAULT_EPOCHS;
    private int trainPerClass = DEFAULT_TRAIN_PER_CLASS;
    private int testPerClass = DEFAULT_TEST_PER_CLASS;
    private int groups = DEFAULT_GROUPS;
    private double batchNormDecay = 0.9;
    private int[] widths = {16, 32, 64};
    private int blocksPerStage = 1;
    private long seed = DEFAULT_SEED;
    private Path outputFolder = Paths.get("target", "small-batch-resnet");
    private Path dataFolder;
    private Path addTo;
    private double progressSeconds = 10;
    private boolean help;

    private ExperimentOptions() {
    }

    /** @throws IllegalArgumentException naming the flag and the value for anything malformed or unknown */
    public static ExperimentOptions parse(String... args) {
        ExperimentOptions o = new ExperimentOptions();
        for (int i = 0; i < args.length; i++) {
            String flag = args[i];
            if (flag.equals("--help") || flag.equals("-h")) {
                o.help = true;
                continue;
            }
            if (flag.equals("--full")) {
                o.trainPerClass = 0;
                o.testPerClass = 0;
                continue;
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("flag " + flag + " needs a value");
            }
            String value = args[++i];
            switch (flag) {
                case "--batch-sizes" -> o.batchSizes = positiveInts(flag, value);
                case "--norms" -> o.norms = norms(value);
                case "--epochs" -> o.epochs = positiveInt(flag, value);
                case "--train-per-class" -> o.trainPerClass = positiveInt(flag, value);
                case "--test-per-class" -> o.testPerClass = positiveInt(flag, value);
                case "--groups" -> o.groups = positiveInt(flag, value);
                case "--bn-decay" -> o.batchNormDecay = fraction(flag, value);
                case "--widths" -> o.widths = positiveInts(flag, value).stream().mapToInt(Integer::intValue).toArray();
                case "--blocks" -> o.blocksPerStage = positiveInt(flag, value);
                case "--seed" -> o.seed = parse(flag, value, Long::parseLong);
                case "--out" -> o.outputFolder = Paths.get(value);
                case "--data" -> o.dataFolder = Paths.get(value);
                case "--add-to" -> o.addTo = Paths.get(value);
                case "--progress-seconds" -> o.progressSeconds = parse(flag, value, Double::parseDouble);
                default -> throw new IllegalArgumentException("unknown flag " + flag);
            }
        }
        for (int width : o.widths) {
            if (width % o.groups != 0) {
                throw new IllegalArgumentException("--groups " + o.groups + " does not divide stage width "
                        + width + " (--widths " + Arrays.toString(o.widths) + ")");
            }
        }
        return o;
    }

    private static List<Integer> positiveInts(String flag, String value) {
        List<Integer> values = new ArrayList<>();
        for (String part : value.split(",")) {
            values.add(positiveInt(flag, part.trim()));
        }
        return List.copyOf(values);
    }

    private static int positiveInt(String flag, String value) {
        int n = parse(flag, value, Integer::parseInt);
        if (n <= 0) {
            throw new IllegalArgumentException(flag + " " + value + ": must be a positive integer");
        }
        return n;
    }

    private static double fraction(String flag, String value) {
        double d = parse(flag, value, Double::parseDouble);
        if (!(d >= 0 && d < 1)) {
            throw new IllegalArgumentException(flag + " " + value + ": must be in [0, 1)");
        }
        return d;
    }

    private static List<SmallResNet.Norm> norms(String value) {
        List<SmallResNet.Norm> norms = new ArrayList<>();
        for (String part : value.split(",")) {
            SmallResNet.Norm norm = SmallResNet.Norm.fromLabel(part).filter(n -> n != SmallResNet.Norm.NONE)
                    .orElseThrow(() -> new IllegalArgumentException("--norms " + value
                            + ": expected a list of BN, GN and GNWS"));
            norms.add(norm);
        }
        return List.copyOf(norms);
    }

    private static <T> T parse(String flag, String value, Function<String, T> parser) {
        try {
            return parser.apply(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(flag + " " + value + ": not a number");
        }
    }

    public List<Integer> batchSizes() {
        return batchSizes;
    }

    public List<SmallResNet.Norm> norms() {
        return norms;
    }

    public int epochs() {
        return epochs;
    }

    /** Training images per class; 0 for all. */
    public int trainPerClass() {
        return trainPerClass;
    }

    /** Test images per class; 0 for all. */
    public int testPerClass() {
        return testPerClass;
    }

    public int groups() {
        return groups;
    }

    public double batchNormDecay() {
        return batchNormDecay;
    }

    public int[] widths() {
        return widths.clone();
    }

    public int blocksPerStage() {
        return blocksPerStage;
    }

    public long seed() {
        return seed;
    }

    public Path outputFolder() {
        return outputFolder;
    }

    /** The Fashion-MNIST folder given by flag, or null to look in the usual places. */
    public Path dataFolder() {
        return dataFolder;
    }

    /** An earlier results.csv whose runs the report adds, or null. */
    public Path addTo() {
        return addTo;
    }

    public double progressSeconds() {
        return progressSeconds;
    }

    public boolean help() {
        return help;
    }
}
