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
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration;
import org.nd4j.linalg.api.memory.enums.AllocationPolicy;
import org.nd4j.linalg.api.memory.enums.LearningPolicy;
import org.nd4j.linalg.api.memory.enums.ResetPolicy;
import org.nd4j.linalg.api.memory.enums.SpillPolicy;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Steady-state timings of GroupNorm (this library, both engines) against DL4J's BatchNormalization, a one-pass
 * memory floor, and PyTorch's CPU kernels when python3 with torch is available. Layers run the way a network runs
 * them: with DL4J workspaces (activations, working memory, gradients), after warm-up, median of many iterations.
 *
 * <pre>OMP_NUM_THREADS=2 mvn -q compile exec:java -Dexec.mainClass=org.groupnorm.dl4j.bench.GroupNormBenchmark</pre>
 * Options (system properties): {@code -Dbench.shapes=8,64,56,56,32;2,16,8,8,4} (N,C,H,W,G), {@code -Dbench.iterations=100},
 * {@code -Dbench.python=/usr/bin/python3}, {@code -Dbench.samediff=false} (skips the slow SameDiff-engine column).
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
        boolean withSameDiff = Boolean.parseBoolean(System.getProperty("bench.samediff", "true"));
        int threads = Nd4j.getEnvironment().maxMasterThreads();
        System.out.printf("threads (ND4J/OMP): %d, float32, median of %d after >= %d warm-up calls and %.0f s "
                + "(spread = IQR); CPU kernel loops: %s%n", threads, iterations, WARMUP, WARMUP_SECONDS,
                GroupNormKernel.usesVectorApi() ? "Vector API" : "plain Java (no --add-modules jdk.incubator.vector)");
        Map<String, double[]> torch = torchTimings(shapes, threads, iterations);
        // Pass 1: the GroupNorm kernel and the floor for every shape. Pass 2: the slow columns (SameDiff engine,
        // DL4J BatchNorm), whose garbage and JIT activity would otherwise disturb the fast measurements.
        Map<String, String[]> rows = new LinkedHashMap<>();
        for (String spec : shapes) {
            // Every shape once before any is measured: HotSpot then compiles the kernel for all of them up front,
            // instead of recompiling it in the middle of a later shape's measurement.
            Shape shape = Shape.parse(spec);
            time(1, () -> run(shape.groupNorm(), shape.x, shape.dy));
        }
        for (String spec : shapes) {
            Shape shape = Shape.parse(spec);
            GroupNormalizationLayer gn = shape.groupNorm();
            Stats fwd = time(iterations, () -> run(gn, shape.x, null));
            Stats fwdBwd = time(iterations, () -> run(gn, shape.x, shape.dy));
            Stats floor = time(iterations, () -> shape.x.addi(0.0f));   // one read + one write of the tensor
            Allocations allocations = Allocations.perIteration(() -> run(gn, shape.x, shape.dy));
            double[] t = torch.get(spec);
            rows.put(spec, new String[]{fwd.toString(), fwdBwd.toString(), null, null, floor.toString(),
                    t == null ? "-" : String.format("%.2fx", fwd.median / t[0]),
                    t == null ? "-" : String.format("%.2fx", fwdBwd.median / t[1]), allocations.toString()});
        }
        for (String spec : shapes) {
            Shape shape = Shape.parse(spec);
            GroupNormalizationLayer gn = shape.groupNorm();
            gn.setEngine(GroupNormalizationLayer.Engine.SAMEDIFF);
            Object sameDiff = withSameDiff ? time(Math.max(5, iterations / 3), () -> run(gn, shape.x, shape.dy))
                    : "-";
            Layer bn = instantiate(new BatchNormalization.Builder().nIn(shape.channels).nOut(shape.channels).build());
            Stats bnFwdBwd = time(Math.max(5, iterations / 3), () -> run(bn, shape.x, shape.dy));
            Allocations bnAllocations = Allocations.perIteration(() -> run(bn, shape.x, shape.dy));
            String[] row = rows.get(spec);
            row[2] = sameDiff.toString();
            row[3] = bnFwdBwd.toString();
            row[7] += "; DL4J BN " + bnAllocations;
        }
        System.out.printf("%-16s %18s %18s %18s %18s %14s %9s %9s%n", "N,C,H,W,G", "GN fwd ms",
                "GN fwd+bwd ms", "GN(SameDiff) f+b", "DL4J BN f+b ms", "floor ms", "fwd/torch", "f+b/torch");
        for (String spec : shapes) {
            String[] row = rows.get(spec);
            System.out.printf("%-16s %18s %18s %18s %18s %14s %9s %9s%n", spec, row[0], row[1], row[2], row[3],
                    row[4], row[5], row[6]);
            System.out.printf("%-16s allocations per fwd+bwd outside workspaces: GN %s%n", "", row[7]);
            double[] t = torch.get(spec);
            if (t != null) {
                System.out.printf("%-16s torch: GN fwd %.3f ms, GN fwd+bwd %.3f ms, BN fwd+bwd %.3f ms%n", "", t[0],
                        t[1], t[2]);
            }
        }
    }

    /** One benchmark shape (N,C,H,W,G) with random input and output gradient. */
    private record Shape(long channels, int groups, INDArray x, INDArray dy) {
        static Shape parse(String spec) {
            long[] v = Arrays.stream(spec.split(",")).mapToLong(Long::parseLong).toArray();
            long[] shape = {v[0], v[1], v[2], v[3]};
            return new Shape(v[1], (int) v[4], Nd4j.randn(DataType.FLOAT, shape), Nd4j.randn(DataType.FLOAT, shape));
        }

        GroupNormalizationLayer groupNorm() {
            return (GroupNormalizationLayer) instantiate(new GroupNormalization.Builder().nIn(channels).groups(groups)
                    .dataFormat(TensorLayout.NCHW).build());
        }
    }

    /** A stand-alone runtime layer with parameters and gradient views, as a network would hold it. */
    private static Layer instantiate(org.deeplearning4j.nn.conf.layers.Layer conf) {
        NeuralNetConfiguration nnc = new NeuralNetConfiguration.Builder().dataType(DataType.FLOAT).layer(conf)
                .build();
        long numParams = conf.initializer().numParams(conf);
        Layer layer = conf.instantiate(nnc, null, 0, Nd4j.create(DataType.FLOAT, 1, numParams), true,
                DataType.FLOAT);
        layer.setBackpropGradientsViewArray(Nd4j.create(DataType.FLOAT, 1, numParams));
        return layer;
    }

    private static final WorkspaceConfiguration WORKSPACE = WorkspaceConfiguration.builder()
            .initialSize(0).overallocationLimit(0.2).policyReset(ResetPolicy.BLOCK_LEFT)
            .policyLearning(LearningPolicy.OVER_TIME).policySpill(SpillPolicy.REALLOCATE)
            .policyAllocation(AllocationPolicy.OVERALLOCATE).build();
    private static final LayerWorkspaceMgr WORKSPACES = LayerWorkspaceMgr.builder()
            .with(ArrayType.ACTIVATIONS, "BENCH_ACT", WORKSPACE)
            .with(ArrayType.INPUT, "BENCH_ACT", WORKSPACE)
            .with(ArrayType.FF_WORKING_MEM, "BENCH_FF", WORKSPACE)
            .with(ArrayType.BP_WORKING_MEM, "BENCH_BP", WORKSPACE)
            .with(ArrayType.ACTIVATION_GRAD, "BENCH_GRAD", WORKSPACE)
            .with(ArrayType.FF_CACHE, "BENCH_FF", WORKSPACE)
            .with(ArrayType.RNN_FF_LOOP_WORKING_MEM, "BENCH_FF", WORKSPACE)
            .with(ArrayType.RNN_BP_LOOP_WORKING_MEM, "BENCH_BP", WORKSPACE)
            .build();

    /** One forward (and backward when dy is given) inside open workspaces, as in a training iteration. */
    private static void run(Layer layer, INDArray x, INDArray dy) {
        try (MemoryWorkspace act = WORKSPACES.notifyScopeEntered(ArrayType.ACTIVATIONS);
             MemoryWorkspace ff = WORKSPACES.notifyScopeEntered(ArrayType.FF_WORKING_MEM);
             MemoryWorkspace bp = WORKSPACES.notifyScopeEntered(ArrayType.BP_WORKING_MEM);
             MemoryWorkspace grad = WORKSPACES.notifyScopeEntered(ArrayType.ACTIVATION_GRAD)) {
            layer.setInput(x, WORKSPACES);
            layer.activate(true, WORKSPACES);
            if (dy != null) {
                layer.backpropGradient(dy, WORKSPACES);
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

    /** Median and interquartile range in ms. */
    private record Stats(double median, double iqr) {
        @Override
        public String toString() {
            return String.format("%.3f (+-%.3f)", median, iqr / 2);
        }
    }

    private static Stats time(int iterations, Runnable body) {
        long warmupStart = System.nanoTime();
        for (int i = 0; i < WARMUP || System.nanoTime() - warmupStart < WARMUP_SECONDS * 1e9; i++) {
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
        return new Stats(ms[iterations / 2], ms[iterations * 3 / 4] - ms[iterations / 4]);
    }

    /** Runs benchmarks/torch_groupnorm.py with the same threads and shapes; empty when no python has torch. */
    private static Map<String, double[]> torchTimings(String[] shapes, int threads, int iterations) {
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
                        if (fields.length == 4 && result.size() < shapes.length && fields[0].contains(",")) {
                            result.put(fields[0], new double[]{Double.parseDouble(fields[1]),
                                    Double.parseDouble(fields[2]), Double.parseDouble(fields[3])});
                        }
                    }
                }
                if (process.waitFor() == 0 && !result.isEmpty()) {
                    System.out.println("torch reference: " + python + " " + script);
                    return result;
                }
                result.clear();
            } catch (Exception e) {
                result.clear();
            }
        }
        System.out.println("torch reference: not available (apt-get install python3-torch to compare)");
        return result;
    }
}
