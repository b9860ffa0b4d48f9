package org.groupnorm.dl4j.bench;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.Pointer;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.TensorLayout;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Steady-state timings of GroupNorm (this library: the CPU kernel, and forward+backward on the portable and SameDiff
 * engines, with the portable one's ratio to the kernel) against DL4J's BatchNormalization, a one-pass
 * memory floor, and PyTorch's CPU kernels when python3 with torch is available. Layers run the way a network runs
 * them: with DL4J workspaces (activations, working memory, gradients), after warm-up, median of many iterations, in
 * rounds that alternate with torch; ratios are given as the median over rounds with the lowest and highest.
 *
 * <pre>OMP_NUM_THREADS=2 mvn -q compile exec:java -Dexec.mainClass=org.groupnorm.dl4j.bench.GroupNormBenchmark</pre>
 * Options (system properties): {@code -Dbench.shapes=8,64,56,56,32;2,16,8,8,4} (N,C,H,W,G), {@code -Dbench.iterations=100},
 * {@code -Dbench.rounds=3}, {@code -Dbench.python=/usr/bin/python3}, {@code -Dbench.samediff=false} (skips the slow
 * SameDiff-engine column), {@code -Dbench.masked=false} (skips the masked-sequence columns).
 */
public class GroupNormBenchmark {

    private static final String DEFAULT_SHAPES = "8,64,56,56,32;2,256,56,56,32;32,64,32,32,32;2,16,8,8,4";
    /**
     * Warm-up: at least this many calls and {@link #WARMUP_SECONDS}. HotSpot compiles the kernel's loops only after
     * some hundreds of calls; the per-call time falls until then.
     */
    private static final int WARMUP = 20;
    private static final double WARMUP_SECONDS = 3;

    public static void main(String[] args) throws Exception {
        String[] shapes = System.getProperty("bench.shapes", DEFAULT_SHAPES).split(";");
        int iterations = Integer.getInteger("bench.iterations", 100);
        int rounds = Integer.getInteger("bench.rounds", 3);
        boolean withSameDiff = Boolean.parseBoolean(System.getProperty("bench.samediff", "true"));
        // The masked columns share the staged code with the HALF ones: measured in the same JVM, they change how
        // HotSpot compiles it (a network has one data type and would not run both).
        boolean withMasked = Boolean.parseBoolean(System.getProperty("bench.masked", "true"));
        int threads = Nd4j.getEnvironment().maxMasterThreads();
        System.out.printf("threads (ND4J/OMP): %d, float32; per round the median of %d calls after warm-up; %d rounds "
                + "(torch, then this library, each round); CPU kernel loops: %s%n", threads, iterations, rounds,
                GroupNormKernel.usesVectorApi() ? "Vector API" : "plain Java (no --add-modules jdk.incubator.vector)");
        for (String spec : shapes) {
            // Every shape once before any is measured: HotSpot then compiles the kernel for all of them up front,
            // instead of recompiling it in the middle of a later shape's measurement.
            Shape shape = Shape.parse(spec);
            time(1, WARMUP_SECONDS, () -> run(shape.groupNorm(), shape.x, shape.dy));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNormNhwc(), shape.xNhwc, shape.dyNhwc));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNorm(Activation.RELU), shape.x, shape.dy));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNorm(Activation.SWISH), shape.x, shape.dy));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNormNhwc(Activation.RELU), shape.xNhwc, shape.dyNhwc));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNormNhwc(Activation.SWISH), shape.xNhwc, shape.dyNhwc));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNormHalf(), shape.half(shape.x), shape.half(shape.dy)));
            time(1, WARMUP_SECONDS, () -> run(shape.groupNormNhwcHalf(), shape.half(shape.xNhwc),
                    shape.half(shape.dyNhwc)));
            if (withMasked) {
                time(1, WARMUP_SECONDS, () -> run(shape.groupNorm(TensorLayout.NCW), shape.sequence(shape.x),
                        shape.sequence(shape.dy), shape.mask));
                time(1, WARMUP_SECONDS, () -> run(shape.groupNorm(TensorLayout.NWC),
                        shape.sequenceLast(shape.xNhwc), shape.sequenceLast(shape.dyNhwc), shape.mask));
            }
        }
        // The portable engine, each shape in its own workspaces as in a network that always runs it (workspaces sized
        // by the kernel would hand it slow fresh allocations), before the rounds: measured after them, the first
        // shape came out 5x slower than the same shape measured second.
        Map<String, Double> portable = new HashMap<>();
        for (String spec : shapes) {
            Shape shape = Shape.parse(spec);
            GroupNormalizationLayer layer = shape.groupNorm();
            layer.setEngine(GroupNormalizationLayer.Engine.PORTABLE);
            LayerWorkspaceMgr portableWorkspaces = workspaces("PORTABLE_" + spec);
            System.gc();   // frees the warm-up's detached input arrays (ND4J frees off-heap memory only on GC)
            portable.put(spec, time(iterations, 2 * WARMUP_SECONDS,
                    () -> run(layer, shape.x, shape.dy, portableWorkspaces)));
        }
        // The fast columns and torch alternate in rounds: this machine's speed drifts over minutes (shared host), and
        // alternating exposes both sides to the same drift. The slow columns (SameDiff engine, DL4J BatchNorm) run
        // once at the end: their garbage and JIT activity would disturb the fast measurements.
        // Per shape, per round. Ours: GN fwd, f+b, floor, NHWC f+b, GN+ReLU f+b, GN+SiLU f+b, HALF f+b, NHWC GN+ReLU
        // f+b, NHWC GN+SiLU f+b, NHWC HALF f+b, NCW masked f+b, NWC masked f+b. Torch: GN
        // fwd, f+b, BN f+b, channels_last f+b, GN then ReLU f+b, GN then SiLU f+b.
        Map<String, List<double[]>> measured = new LinkedHashMap<>();
        Map<String, List<double[]>> torch = new LinkedHashMap<>();
        Map<String, Allocations> allocations = new HashMap<>();
        for (int round = 0; round < rounds; round++) {
            torchTimings(shapes, threads, iterations, round == 0).forEach(
                    (spec, t) -> torch.computeIfAbsent(spec, k -> new ArrayList<>()).add(t));
            for (String spec : shapes) {
                Shape shape = Shape.parse(spec);
                GroupNormalizationLayer gn = shape.groupNorm();
                double fwd = time(iterations, 1, () -> run(gn, shape.x, null));
                double fwdBwd = time(iterations, 1, () -> run(gn, shape.x, shape.dy));
                double floor = time(iterations, 1, () -> shape.x.addi(0.0f));  // one read + one write
                GroupNormalizationLayer nhwc = shape.groupNormNhwc();
                double nhwcFwdBwd = time(iterations, 1, () -> run(nhwc, shape.xNhwc, shape.dyNhwc));
                GroupNormalizationLayer relu = shape.groupNorm(Activation.RELU);
                double reluFwdBwd = time(iterations, 1, () -> run(relu, shape.x, shape.dy));
                GroupNormalizationLayer silu = shape.groupNorm(Activation.SWISH);
                double siluFwdBwd = time(iterations, 1, () -> run(silu, shape.x, shape.dy));
                GroupNormalizationLayer half = shape.groupNormHalf();
                double halfFwdBwd = time(iterations, 1, () -> run(half, shape.half(shape.x), shape.half(shape.dy)));
                GroupNormalizationLayer nhwcRelu = shape.groupNormNhwc(Activation.RELU);
                double nhwcReluFwdBwd = time(iterations, 1, () -> run(nhwcRelu, shape.xNhwc, shape.dyNhwc));
                GroupNormalizationLayer nhwcSilu = shape.groupNormNhwc(Activation.SWISH);
                double nhwcSiluFwdBwd = time(iterations, 1, () -> run(nhwcSilu, shape.xNhwc, shape.dyNhwc));
                GroupNormalizationLayer nhwcHalf = shape.groupNormNhwcHalf();
                double nhwcHalfFwdBwd = time(iterations, 1,
                        () -> run(nhwcHalf, shape.half(shape.xNhwc), shape.half(shape.dyNhwc)));
                GroupNormalizationLayer ncw = shape.groupNorm(TensorLayout.NCW);
                double ncwMaskedFwdBwd = withMasked ? time(iterations, 1, () -> run(ncw, shape.sequence(shape.x),
                        shape.sequence(shape.dy), shape.mask)) : Double.NaN;
                GroupNormalizationLayer nwc = shape.groupNorm(TensorLayout.NWC);
                double nwcMaskedFwdBwd = withMasked ? time(iterations, 1, () -> run(nwc,
                        shape.sequenceLast(shape.xNhwc), shape.sequenceLast(shape.dyNhwc), shape.mask)) : Double.NaN;
                measured.computeIfAbsent(spec, k -> new ArrayList<>()).add(new double[]{fwd, fwdBwd, floor,
                        nhwcFwdBwd, reluFwdBwd, siluFwdBwd, halfFwdBwd, nhwcReluFwdBwd, nhwcSiluFwdBwd,
                        nhwcHalfFwdBwd, ncwMaskedFwdBwd, nwcMaskedFwdBwd});
                allocations.putIfAbsent(spec, Allocations.perIteration(() -> run(gn, shape.x, shape.dy)));
            }
        }
        System.out.printf("%-16s %9s %9s %18s %12s %10s %8s %17s %17s %8s%n", "N,C,H,W,G", "GN fwd", "GN f+b",
                "portable f+b", "SameDiff f+b", "DL4J BN", "floor", "fwd/torch", "f+b/torch", "torch BN");
        for (String spec : shapes) {
            Shape shape = Shape.parse(spec);
            int slowIterations = Math.max(5, iterations / 10);
            double portableFwdBwd = portable.get(spec);
            GroupNormalizationLayer gn = shape.groupNorm();
            gn.setEngine(GroupNormalizationLayer.Engine.SAMEDIFF);
            String sameDiff = withSameDiff ? String.format("%.1f",
                    time(slowIterations, WARMUP_SECONDS, () -> run(gn, shape.x, shape.dy))) : "-";
            Layer bn = instantiate(new BatchNormalization.Builder().nIn(shape.channels).nOut(shape.channels).build());
            double bnFwdBwd = time(slowIterations, WARMUP_SECONDS, () -> run(bn, shape.x, shape.dy));
            Allocations bnAllocations = Allocations.perIteration(() -> run(bn, shape.x, shape.dy));
            List<double[]> ours = measured.get(spec);
            List<double[]> theirs = torch.get(spec);
            System.out.printf("%-16s %9.3f %9.3f %18s %12s %10.1f %8.3f %17s %17s %8s%n", spec, median(ours, 0),
                    median(ours, 1), String.format("%.2f (%.1fx)", portableFwdBwd, portableFwdBwd / median(ours, 1)),
                    sameDiff, bnFwdBwd, median(ours, 2), ratios(ours, theirs, 0),
                    ratios(ours, theirs, 1), theirs == null ? "-" : String.format("%.3f", median(theirs, 2)));
            System.out.printf("%-16s torch GN fwd %s ms, f+b %s ms; allocations per fwd+bwd outside workspaces: GN %s;"
                    + " DL4J BN %s%n", "", theirs == null ? "-" : String.format("%.3f", median(theirs, 0)),
                    theirs == null ? "-" : String.format("%.3f", median(theirs, 1)), allocations.get(spec),
                    bnAllocations);
        }
        System.out.printf("%nChannels-last (NHWC, same values), forward+backward ms:%n%-16s %9s %9s %17s %11s %17s%n",
                "N,C,H,W,G", "NCHW f+b", "NHWC f+b", "NHWC/NCHW", "torch cl", "NHWC/torch cl");
        for (String spec : shapes) {
            List<double[]> ours = measured.get(spec);
            List<double[]> theirs = torch.get(spec);
            System.out.printf("%-16s %9.3f %9.3f %17s %11s %17s%n", spec, median(ours, 1), median(ours, 3),
                    ratios(ours, 3, ours, 1), theirs == null ? "-" : String.format("%.3f", median(theirs, 3)),
                    theirs == null ? "-" : ratios(ours, 3, theirs, 3));
        }
        System.out.printf("%nFused activations (NCHW), forward+backward ms; torch runs GroupNorm then the activation:"
                + "%n%-16s %9s %17s %17s %9s %17s %17s%n", "N,C,H,W,G", "GN+ReLU", "/plain GN", "/torch GN,ReLU",
                "GN+SiLU", "/plain GN", "/torch GN,SiLU");
        for (String spec : shapes) {
            List<double[]> ours = measured.get(spec);
            List<double[]> theirs = torch.get(spec);
            System.out.printf("%-16s %9.3f %17s %17s %9.3f %17s %17s%n", spec, median(ours, 4),
                    ratios(ours, 4, ours, 1), theirs == null ? "-" : ratios(ours, 4, theirs, 4), median(ours, 5),
                    ratios(ours, 5, ours, 1), theirs == null ? "-" : ratios(ours, 5, theirs, 5));
        }
        System.out.printf("%nFused activations channels-last (NHWC), forward+backward ms:%n%-16s %9s %17s %17s %9s"
                + " %17s %17s%n", "N,C,H,W,G", "GN+ReLU", "/plain NHWC", "/NCHW GN+ReLU", "GN+SiLU", "/plain NHWC",
                "/NCHW GN+SiLU");
        for (String spec : shapes) {
            List<double[]> ours = measured.get(spec);
            System.out.printf("%-16s %9.3f %17s %17s %9.3f %17s %17s%n", spec, median(ours, 7),
                    ratios(ours, 7, ours, 3), ratios(ours, 7, ours, 4), median(ours, 8), ratios(ours, 8, ours, 3),
                    ratios(ours, 8, ours, 5));
        }
        System.out.printf("%nHalf precision (HALF network), forward+backward ms:%n%-16s %9s %17s %9s %17s%n",
                "N,C,H,W,G", "NCHW HALF", "/NCHW float32", "NHWC HALF", "/NHWC float32");
        for (String spec : shapes) {
            List<double[]> ours = measured.get(spec);
            System.out.printf("%-16s %9.3f %17s %9.3f %17s%n", spec, median(ours, 6), ratios(ours, 6, ours, 1),
                    median(ours, 9), ratios(ours, 9, ours, 3));
        }
        if (!withMasked) {
            return;
        }
        System.out.printf("%nMasked sequences ([N, C, H*W] NCW and [N, H*W, C] NWC, the same values; example n padded"
                + " on its last (n %% 4)/8 positions), forward+backward ms:%n%-16s %10s %17s %10s %17s%n",
                "N,C,H,W,G", "NCW masked", "/NCHW", "NWC masked", "/NHWC");
        for (String spec : shapes) {
            List<double[]> ours = measured.get(spec);
            System.out.printf("%-16s %10.3f %17s %10.3f %17s%n", spec, median(ours, 10), ratios(ours, 10, ours, 1),
                    median(ours, 11), ratios(ours, 11, ours, 3));
        }
    }

    /** The median over rounds of column {@code column}. */
    private static double median(List<double[]> rounds, int column) {
        double[] values = rounds.stream().mapToDouble(r -> r[column]).sorted().toArray();
        return values[values.length / 2];
    }

    /** Our time / torch's per round: "median [lowest-highest]". */
    private static String ratios(List<double[]> ours, List<double[]> theirs, int column) {
        return theirs == null ? "-" : ratios(ours, column, theirs, column);
    }

    /** a[column] / b[otherColumn] per round: "median [lowest-highest]". */
    private static String ratios(List<double[]> a, int column, List<double[]> b, int otherColumn) {
        double[] r = new double[Math.min(a.size(), b.size())];
        for (int i = 0; i < r.length; i++) {
            r[i] = a.get(i)[column] / b.get(i)[otherColumn];
        }
        Arrays.sort(r);
        return String.format("%.2fx [%.2f-%.2f]", r[r.length / 2], r[0], r[r.length - 1]);
    }

    /**
     * One benchmark shape (N,C,H,W,G) with random input and output gradient, and a mask for the same values read as
     * sequences of H*W steps.
     */
    private record Shape(long channels, int groups, INDArray x, INDArray dy, INDArray xNhwc, INDArray dyNhwc,
                         INDArray mask) {
        /** Channels-first input as [N, C, H*W] sequences (a view). */
        INDArray sequence(INDArray input) {
            return input.reshape(input.size(0), input.size(1), input.size(2) * input.size(3));
        }

        /** Channels-last input as [N, H*W, C] sequences (a view). */
        INDArray sequenceLast(INDArray input) {
            return input.reshape(input.size(0), input.size(1) * input.size(2), input.size(3));
        }

        /** GroupNorm on sequences in {@code layout}. */
        GroupNormalizationLayer groupNorm(TensorLayout layout) {
            return groupNorm(new GroupNormalization.Builder().dataFormat(layout));
        }

        /** A HALF copy of one of this shape's inputs, made once. */
        INDArray half(INDArray input) {
            return HALVES.computeIfAbsent(input, a -> a.castTo(DataType.HALF));
        }

        static Shape parse(String spec) {
            long[] v = Arrays.stream(spec.split(",")).mapToLong(Long::parseLong).toArray();
            long[] shape = {v[0], v[1], v[2], v[3]};
            INDArray x = Nd4j.randn(DataType.FLOAT, shape);
            INDArray dy = Nd4j.randn(DataType.FLOAT, shape);
            // Sequences of different lengths, as in a batch: example n padded on its last (n % 4) eighths.
            long steps = v[2] * v[3];
            INDArray mask = Nd4j.ones(DataType.FLOAT, v[0], steps);
            for (int n = 0; n < v[0]; n++) {
                if (n % 4 > 0) {
                    mask.get(NDArrayIndex.point(n), NDArrayIndex.interval(steps - n % 4 * steps / 8, steps))
                            .assign(0);
                }
            }
            return new Shape(v[1], (int) v[4], x, dy, x.permute(0, 2, 3, 1).dup('c'), dy.permute(0, 2, 3, 1).dup('c'),
                    mask);
        }

        GroupNormalizationLayer groupNorm() {
            return groupNorm(new GroupNormalization.Builder().dataFormat(TensorLayout.NCHW));
        }

        /** GroupNorm with an activation fused into it (NCHW). */
        GroupNormalizationLayer groupNorm(Activation activation) {
            return groupNorm(new GroupNormalization.Builder().dataFormat(TensorLayout.NCHW).activation(activation));
        }

        /** The same GroupNorm in a HALF network. */
        GroupNormalizationLayer groupNormHalf() {
            return (GroupNormalizationLayer) instantiate(new GroupNormalization.Builder().nIn(channels).groups(groups)
                    .dataFormat(TensorLayout.NCHW).build(), DataType.HALF);
        }

        /** The same GroupNorm in a HALF network, on channels-last input. */
        GroupNormalizationLayer groupNormNhwcHalf() {
            return (GroupNormalizationLayer) instantiate(new GroupNormalization.Builder().nIn(channels).groups(groups)
                    .dataFormat(TensorLayout.NHWC).build(), DataType.HALF);
        }

        /** The same GroupNorm on channels-last input (the same values, permuted). */
        GroupNormalizationLayer groupNormNhwc() {
            return groupNorm(new GroupNormalization.Builder().dataFormat(TensorLayout.NHWC));
        }

        /** GroupNorm with an activation fused into it, on channels-last input. */
        GroupNormalizationLayer groupNormNhwc(Activation activation) {
            return groupNorm(new GroupNormalization.Builder().dataFormat(TensorLayout.NHWC).activation(activation));
        }

        private GroupNormalizationLayer groupNorm(GroupNormalization.Builder builder) {
            return (GroupNormalizationLayer) instantiate(builder.nIn(channels).groups(groups).build());
        }
    }

    /** A stand-alone runtime layer with parameters and gradient views, as a network would hold it. */
    private static Layer instantiate(org.deeplearning4j.nn.conf.layers.Layer conf) {
        return instantiate(conf, DataType.FLOAT);
    }

    private static Layer instantiate(org.deeplearning4j.nn.conf.layers.Layer conf, DataType type) {
        NeuralNetConfiguration nnc = new NeuralNetConfiguration.Builder().dataType(type).layer(conf).build();
        long numParams = conf.initializer().numParams(conf);
        Layer layer = conf.instantiate(nnc, null, 0, Nd4j.create(type, 1, numParams), true, type);
        layer.setBackpropGradientsViewArray(Nd4j.create(type, 1, numParams));
        return layer;
    }

    /** HALF copies of the inputs, made once per array. */
    private static final Map<INDArray, INDArray> HALVES = new java.util.IdentityHashMap<>();

    private static final WorkspaceConfiguration WORKSPACE = WorkspaceConfiguration.builder()
            .initialSize(0).overallocationLimit(0.2).policyReset(ResetPolicy.BLOCK_LEFT)
            .policyLearning(LearningPolicy.OVER_TIME).policySpill(SpillPolicy.REALLOCATE)
            .policyAllocation(AllocationPolicy.OVERALLOCATE).build();
    private static final LayerWorkspaceMgr WORKSPACES = workspaces("BENCH");

    /** Workspaces for activations, working memory and gradients, named after {@code prefix}. */
    private static LayerWorkspaceMgr workspaces(String prefix) {
        return LayerWorkspaceMgr.builder()
                .with(ArrayType.ACTIVATIONS, prefix + "_ACT", WORKSPACE)
                .with(ArrayType.INPUT, prefix + "_ACT", WORKSPACE)
                .with(ArrayType.FF_WORKING_MEM, prefix + "_FF", WORKSPACE)
                .with(ArrayType.BP_WORKING_MEM, prefix + "_BP", WORKSPACE)
                .with(ArrayType.ACTIVATION_GRAD, prefix + "_GRAD", WORKSPACE)
                .with(ArrayType.FF_CACHE, prefix + "_FF", WORKSPACE)
                .with(ArrayType.RNN_FF_LOOP_WORKING_MEM, prefix + "_FF", WORKSPACE)
                .with(ArrayType.RNN_BP_LOOP_WORKING_MEM, prefix + "_BP", WORKSPACE)
                .build();
    }

    private static void run(Layer layer, INDArray x, INDArray dy) {
        run(layer, x, dy, WORKSPACES);
    }

    /** {@link #run} on sequences with a mask ([N, steps], 0 = padded). */
    private static void run(Layer layer, INDArray x, INDArray dy, INDArray mask) {
        layer.setMaskArray(mask);
        run(layer, x, dy, WORKSPACES);
    }

    /** One forward (and backward when dy is given) inside open workspaces, as in a training iteration. */
    private static void run(Layer layer, INDArray x, INDArray dy, LayerWorkspaceMgr workspaces) {
        try (MemoryWorkspace act = workspaces.notifyScopeEntered(ArrayType.ACTIVATIONS);
             MemoryWorkspace ff = workspaces.notifyScopeEntered(ArrayType.FF_WORKING_MEM);
             MemoryWorkspace bp = workspaces.notifyScopeEntered(ArrayType.BP_WORKING_MEM);
             MemoryWorkspace grad = workspaces.notifyScopeEntered(ArrayType.ACTIVATION_GRAD)) {
            layer.setInput(x, workspaces);
            layer.activate(true, workspaces);
            if (dy != null) {
                layer.backpropGradient(dy, workspaces);
            }
        }
    }

    /**
     * What one warm iteration allocates outside workspaces. Off-heap: every ND4J buffer created outside a workspace
     * registers JavaCPP pointers with deallocators, counted by {@link Pointer#totalCount()} until they are freed
     * (measured across iterations with no collection in between, so nothing is freed meanwhile). On-heap: the
     * bytes the calling thread allocated (the kernel's worker threads allocate nothing once warm).
     */
    private record Allocations(double pointers, double heapBytes) {
        static Allocations perIteration(Runnable body) {
            for (int i = 0; i < 5; i++) {
                body.run();
            }
            int iterations = 10;
            var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long gcBefore = collections();
            long pointersBefore = Pointer.totalCount();
            long heapBefore = threads.getCurrentThreadAllocatedBytes();
            for (int i = 0; i < iterations; i++) {
                body.run();
            }
            long heap = threads.getCurrentThreadAllocatedBytes() - heapBefore;
            long pointers = Pointer.totalCount() - pointersBefore;
            if (collections() != gcBefore) {
                return new Allocations(Double.NaN, (double) heap / iterations);  // a GC freed some: count unknown
            }
            return new Allocations((double) pointers / iterations, (double) heap / iterations);
        }

        private static long collections() {
            return ManagementFactory.getGarbageCollectorMXBeans().stream()
                    .mapToLong(GarbageCollectorMXBean::getCollectionCount).sum();
        }

        @Override
        public String toString() {
            return String.format("%s off-heap pointers, %.1f KB heap", Double.isNaN(pointers) ? "?"
                    : String.format("%.1f", pointers), heapBytes / 1024);
        }
    }

    /** The median ms of {@code body} over {@code iterations} calls after at least {@link #WARMUP} calls and {@code warmupSeconds}. */
    private static double time(int iterations, double warmupSeconds, Runnable body) {
        long warmupStart = System.nanoTime();
        for (int i = 0; i < WARMUP || System.nanoTime() - warmupStart < warmupSeconds * 1e9; i++) {
            body.run();
            if (i % 100 == 99) {
                // ND4J frees arrays allocated outside workspaces (DL4J BatchNorm, the SameDiff engine) only when the
                // garbage collector finds them; without a collection now and then they pile up off-heap.
                System.gc();
            }
        }
        System.gc();
        double[] ms = new double[iterations];
        for (int i = 0; i < iterations; i++) {
            long start = System.nanoTime();
            body.run();
            ms[i] = (System.nanoTime() - start) / 1e6;
        }
        Arrays.sort(ms);
        return ms[iterations / 2];
    }

    /** Runs benchmarks/torch_groupnorm.py with the same threads and shapes; empty when no python has torch. */
    private static Map<String, double[]> torchTimings(String[] shapes, int threads, int iterations,
                                                     boolean announce) {
        Map<String, double[]> result = new HashMap<>();
        File script = new File("benchmarks/torch_groupnorm.py");
        for (String python : new String[]{System.getProperty("bench.python", "python3"), "/usr/bin/python3"}) {
            List<String> command = new ArrayList<>(List.of(python, script.getPath(), String.valueOf(threads),
                    String.valueOf(iterations)));
            command.addAll(Arrays.asList(shapes));
            try {
                Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
                try (BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(),
                        StandardCharsets.UTF_8))) {
                    for (String line; (line = out.readLine()) != null; ) {
                        String[] fields = line.trim().split("\\s+");
                        if (fields.length == 7 && result.size() < shapes.length && fields[0].contains(",")) {
                            result.put(fields[0], Arrays.stream(fields, 1, 7).mapToDouble(Double::parseDouble)
                                    .toArray());
                        }
                    }
                }
                if (process.waitFor() == 0 && !result.isEmpty()) {
                    if (announce) {
                        System.out.println("torch reference: " + python + " " + script);
                    }
                    return result;
                }
                result.clear();
            } catch (Exception e) {
                result.clear();
            }
        }
        if (announce) {
            System.out.println("torch reference: not available (apt-get install python3-torch to compare)");
        }
        return result;
    }
}
