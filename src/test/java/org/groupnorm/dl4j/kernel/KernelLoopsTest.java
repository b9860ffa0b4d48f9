package org.groupnorm.dl4j.kernel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.ref.Reference;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.PrimitiveIterator;
import java.util.Random;
import java.util.stream.LongStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationLReLU;
import org.nd4j.linalg.activations.impl.ActivationReLU;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The float32 path's loops against plain double arithmetic, for every implementation this JVM can load: the plain
 * Java loops always, the Vector API loops when the JVM was started with {@code --add-modules jdk.incubator.vector}
 * (Maven runs this class both ways). Lengths cover runs shorter than a SIMD step, whole steps plus tails, and runs long
 * enough for the float partial sums to be flushed into double many times; runs start at offsets that are not
 * multiples of a vector.
 */
class KernelLoopsTest {

    private static final int[] LENGTHS = {1, 7, 16, 31, 32, 33, 100, 256, 257, 1000, 40_000};
    private static final int[] OFFSETS = {0, 3};
    private static final float MEAN = 2.5f;

    private static final boolean VECTOR_MODULE = ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent();

    static Stream<Arguments> loops() {
        List<Arguments> loops = new ArrayList<>();
        loops.add(Arguments.of("plain Java", new BlockLoops()));
        if (VECTOR_MODULE) {
            loops.add(Arguments.of("Vector API", new VectorLoops()));
        }
        return loops.stream();
    }

    @Test
    void kernelUsesTheVectorApiExactlyWhenTheJvmHasTheModule() {
        assertEquals(VECTOR_MODULE, GroupNormKernel.usesVectorApi());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void everyLoopMatchesDoubleArithmetic(String name, FloatLoops<B> loops) {
        Random random = new Random(3);
        int size = 40_010;
        float[] x = values(random, size, MEAN, 1.5);
        float[] dy = values(random, size, 0, 1);
        Views<B> views = Views.of(loops, x, dy);
        B xs = views.x();
        B dys = views.dy();
        B out = views.out();
        INDArray outArray = views.outArray();
        FloatLoops.Sums sums = new FloatLoops.Sums();
        float scale = 0.7f;
        float offset = -0.3f;
        for (int length : LENGTHS) {
            for (int from : OFFSETS) {
                String where = name + ", [" + from + ", " + (from + length) + ")";
                double sum = 0;
                double squares = 0;
                double dySum = 0;
                double products = 0;
                for (int i = from; i < from + length; i++) {
                    double d = (double) x[i] - MEAN;
                    sum += d;
                    squares += d * d;
                    dySum += dy[i];
                    products += dy[i] * d;
                }
                loops.moments(xs, from, length, MEAN, sums);
                assertEquals(sum, sums.plain, 1e-5 * length, where + ": sum of x - shift");
                assertEquals(squares, sums.weighted, 1e-5 * squares, where + ": sum of (x - shift)^2");
                loops.gradientSums(xs, dys, from, length, MEAN, sums);
                assertEquals(dySum, sums.plain, 1e-5 * length, where + ": sum of dy");
                assertEquals(products, sums.weighted, 1e-5 * length, where + ": sum of dy (x - mean)");

                outArray.assign(0);
                loops.normalize(xs, out, from, length, MEAN, scale, offset, FusedActivation.IDENTITY);
                for (int i = from; i < from + length; i++) {
                    assertEquals(((double) x[i] - MEAN) * scale + offset, outArray.getDouble(i), 1e-5, where);
                }
                loops.inputGradient(xs, dys, out, from, length, MEAN, scale, 1.3f, offset);
                for (int i = from; i < from + length; i++) {
                    double expected = scale * (double) dy[i] + 1.3 * ((double) x[i] - MEAN) + offset;
                    assertEquals(expected, outArray.getDouble(i), 1e-5, where);
                }
                assertEquals(0.0, outArray.getDouble(from + length), where + ": wrote past the run");
                assertEquals(0.0, outArray.getDouble(from == 0 ? size - 1 : from - 1), where + ": wrote before it");
            }
        }
        Reference.reachabilityFence(views);
    }

    /**
     * The fused activations inside the run loops: the activated output, and the output gradient taken through the
     * activation's derivative, against {@link FusedActivation}'s double formulas.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void fusedActivationLoopsMatchDoubleArithmetic(String name, FloatLoops<B> loops) {
        Random random = new Random(6);
        int size = 1000;
        float[] x = values(random, size, MEAN, 1.5);
        float[] dy = values(random, size, 0, 1);
        Views<B> views = Views.of(loops, x, dy);
        B xs = views.x();
        B dys = views.dy();
        B out = views.out();
        INDArray outArray = views.outArray();
        float scale = 1.7f;
        float offset = 0.2f;
        for (FusedActivation.Kind kind : FusedActivation.Kind.values()) {
            FusedActivation activation = new FusedActivation(kind, 0.05f);
            for (int from : OFFSETS) {
                int length = 997 - from;
                String where = name + " " + kind + ", [" + from + ", " + (from + length) + ")";
                loops.normalize(xs, out, from, length, MEAN, scale, offset, activation);
                for (int i = from; i < from + length; i++) {
                    double pre = ((double) x[i] - MEAN) * scale + offset;
                    assertEquals(activation.apply(pre), outArray.getDouble(i), 2e-6, where + ": output at " + i);
                }
                if (activation.isIdentity() || activation.isPiecewiseLinear()) {
                    continue;   // their gradient is computed inside the gated loops (below)
                }
                loops.activationGradient(xs, dys, out, from, length, MEAN, scale, offset, activation);
                for (int i = from; i < from + length; i++) {
                    double pre = ((double) x[i] - MEAN) * scale + offset;
                    assertEquals(activation.derivative(pre) * dy[i], outArray.getDouble(i), 2e-6,
                            where + ": gradient at " + i);
                }
            }
        }
        Reference.reachabilityFence(views);
    }

    /**
     * The sigmoid-based activations (SIGMOID, SWISH) compute exp in their own loops: far into both tails, where float
     * exp overflows or underflows, they still give the activation and its derivative to float precision, and NaN
     * stays NaN.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void sigmoidActivationsHoldOverTheWholeRange(String name, FloatLoops<B> loops) {
        int size = 803;
        float[] x = new float[size];
        float[] dy = new float[size];
        for (int i = 0; i < size; i++) {
            x[i] = -200f + i * 0.5f;   // pre-activations -200 .. 201, through the clamps at -87.3 and 88.7
            dy[i] = 1f + (i % 7) * 0.25f;
        }
        x[5] = Float.NaN;          // inside the whole vectors
        x[size - 1] = Float.NaN;   // past them
        Views<B> views = Views.of(loops, x, dy);
        B xs = views.x();
        B dys = views.dy();
        B out = views.out();
        INDArray outArray = views.outArray();
        for (FusedActivation.Kind kind : List.of(FusedActivation.Kind.SIGMOID, FusedActivation.Kind.SWISH)) {
            FusedActivation activation = new FusedActivation(kind, 0);
            loops.normalize(xs, out, 0, size, 0f, 1f, 0f, activation);
            for (int i = 0; i < size; i++) {
                double expected = activation.apply(x[i]);
                assertEquals(expected, outArray.getDouble(i), 2e-7 * scaleOf(expected),
                        name + " " + kind + " at " + x[i]);   // NaN equals NaN here
            }
            loops.activationGradient(xs, dys, out, 0, size, 0f, 1f, 0f, activation);
            for (int i = 0; i < size; i++) {
                double expected = activation.derivative(x[i]) * dy[i];
                assertEquals(expected, outArray.getDouble(i), 1e-6 * scaleOf(expected),
                        name + " " + kind + " gradient at " + x[i]);
            }
        }
        Reference.reachabilityFence(views);
    }

    /**
     * The backward loops of a fused ReLU/LeakyReLU, which gate dy by the sign of the pre-activation on the fly: the
     * sums of g and g * (x - mean) and the input gradient of g, against double arithmetic with the derivative of
     * {@link FusedActivation}. Values straddle 0 so both sides of every gate are taken.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void gatedLoopsMatchDoubleArithmetic(String name, FloatLoops<B> loops) {
        Random random = new Random(7);
        int size = 40_010;
        float[] x = values(random, size, MEAN, 1.5);
        float[] dy = values(random, size, 0, 1);
        Views<B> views = Views.of(loops, x, dy);
        B xs = views.x();
        B dys = views.dy();
        B out = views.out();
        INDArray outArray = views.outArray();
        FloatLoops.Sums sums = new FloatLoops.Sums();
        float scale = 1.7f;
        float offset = 0.2f;
        for (FusedActivation activation : List.of(new FusedActivation(FusedActivation.Kind.RELU, 0),
                new FusedActivation(FusedActivation.Kind.LEAKYRELU, 0.05f))) {
            for (int length : LENGTHS) {
                for (int from : OFFSETS) {
                    String where = name + " " + activation.kind() + ", [" + from + ", " + (from + length) + ")";
                    double[] g = new double[size];
                    double gSum = 0;
                    double products = 0;
                    for (int i = from; i < from + length; i++) {
                        double centered = (double) x[i] - MEAN;
                        g[i] = activation.derivative(centered * scale + offset) * dy[i];
                        gSum += g[i];
                        products += g[i] * centered;
                    }
                    loops.gatedGradientSums(xs, dys, from, length, MEAN, scale, offset,
                            activation, sums);
                    assertEquals(gSum, sums.plain, 1e-5 * length, where + ": sum of g");
                    assertEquals(products, sums.weighted, 1e-5 * length, where + ": sum of g (x - mean)");
                    outArray.assign(0);
                    loops.gatedInputGradient(xs, dys, out, from, length, MEAN, scale, offset,
                            activation, 0.9f, 1.3f, -0.4f);
                    for (int i = from; i < from + length; i++) {
                        double expected = 0.9 * g[i] + 1.3 * ((double) x[i] - MEAN) - 0.4;
                        assertEquals(expected, outArray.getDouble(i), 1e-5, where + ": dx at " + i);
                    }
                    assertEquals(0.0, outArray.getDouble(from + length), where + ": wrote past the run");
                }
            }
        }
        Reference.reachabilityFence(views);
    }

    /**
     * The channels-last row loops: column sums and per-column elementwise formulas over rows that are a strided part
     * of wider rows (a block of groups), with widths below, at and past whole vectors, against double arithmetic;
     * plain, and with a fused ReLU/LeakyReLU gate (values straddle 0, so both sides of every gate are taken).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void everyRowLoopMatchesDoubleArithmetic(String name, FloatLoops<B> loops) {
        Random random = new Random(4);
        int stride = 100;
        int size = (FloatLoops.ROWS_PER_SUM + 1) * stride;
        float[] x = values(random, size, MEAN, 1.5);
        float[] dy = values(random, size, 0, 1);
        Views<B> views = Views.of(loops, x, dy);
        B xs = views.x();
        B dys = views.dy();
        B out = views.out();
        INDArray outArray = views.outArray();
        List<FusedActivation> activations = List.of(FusedActivation.IDENTITY,
                new FusedActivation(FusedActivation.Kind.RELU, 0), new FusedActivation(FusedActivation.Kind.LEAKYRELU,
                        0.05f));
        for (FusedActivation activation : activations) {
            // Widths below, at and past whole vectors (16 lanes with AVX-512, 8 with AVX2), and the stride itself
            // (a block as wide as the example: rows side by side); 37 rows end on a partial sum of 5.
            for (int width : new int[]{1, 7, 16, 33, 55, 64, 87, stride}) {
                for (int[] rowsAndFrom : new int[][]{{FloatLoops.ROWS_PER_SUM, 0}, {FloatLoops.ROWS_PER_SUM, 5},
                        {37, 3}}) {
                    int rows = rowsAndFrom[0];
                    int from = rowsAndFrom[1];
                    String where = name + " " + activation.kind() + ", width " + width + ", " + rows + " rows from "
                            + from;
                    float[] shift = values(random, width, MEAN, 0.1);
                    float[] scale = values(random, width, 1, 0.3);
                    float[] offset = values(random, width, 0, 0.3);
                    float[] constant = values(random, width, 0, 0.3);
                    float[] gateScale = values(random, width, 1.5, 0.3);
                    float[] gateOffset = values(random, width, 0.2, 0.3);
                    FloatLoops.RowGate gate = activation.isIdentity() ? null
                            : new FloatLoops.RowGate(gateScale, gateOffset, activation);
                    // g: dy through the gate at the pre-activation (x - shift) * gateScale + gateOffset
                    Expected g = (i, c) -> activation.derivative(((double) x[i] - shift[c]) * gateScale[c]
                            + gateOffset[c]) * dy[i];
                    float[] sums = new float[width];
                    float[] squares = new float[width];
                    float[] gradSums = new float[width];
                    float[] products = new float[width];
                    loops.rowMoments(xs, from, stride, rows, width, shift, sums, squares);
                    loops.rowGradientSums(xs, dys, from, stride, rows, width, shift, gate, gradSums, products);
                    for (int c = 0; c < width; c++) {
                        double sum = 0;
                        double square = 0;
                        double gSum = 0;
                        double product = 0;
                        for (int r = 0; r < rows; r++) {
                            int i = from + r * stride + c;
                            double d = (double) x[i] - shift[c];
                            sum += d;
                            square += d * d;
                            gSum += g.at(i, c);
                            product += g.at(i, c) * d;
                        }
                        assertEquals(sum, sums[c], 1e-5 * rows, where + ": column sum of x - shift");
                        assertEquals(square, squares[c], 1e-5 * square, where + ": column sum of (x - shift)^2");
                        assertEquals(gSum, gradSums[c], 1e-5 * rows, where + ": column sum of g");
                        assertEquals(product, products[c], 1e-5 * rows, where + ": column sum of g (x - anchor)");
                    }
                    outArray.assign(0);
                    loops.rowNormalize(xs, out, from, stride, rows, width, shift, scale, offset,
                            gate == null ? null : new FloatLoops.RowGate(scale, offset, activation));
                    checkRows(outArray, from, stride, rows, width, where + ": normalize",
                            (i, c) -> activation.apply(((double) x[i] - shift[c]) * scale[c] + offset[c]));
                    outArray.assign(0);
                    loops.rowInputGradient(xs, dys, out, from, stride, rows, width, shift, gate, scale, offset,
                            constant);
                    checkRows(outArray, from, stride, rows, width, where + ": input gradient",
                            (i, c) -> scale[c] * g.at(i, c) + offset[c] * ((double) x[i] - shift[c]) + constant[c]);
                }
            }
        }
        Reference.reachabilityFence(views);
    }

    /**
     * A fused ReLU/LeakyReLU's gate is exact at its edges and takes DL4J's derivative at 0 (ReLU 0, LeakyReLU 1, for
     * +0 and -0 alike): the smallest positive float passes dy unchanged, the largest negative one scales it by the
     * negative slope; in the run loops and the row loops, forward and backward. The expected factors are DL4J's own
     * activations' backprop at those values.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void gatesTakeDl4jDerivativesAtZeroAndExactlyBesideIt(String name, FloatLoops<B> loops) {
        float slope = 0.25f;
        float[] edges = {Float.MIN_VALUE, 0f, -0f, -Float.MIN_VALUE};
        int length = 64;   // whole vectors: every element goes through the SIMD loops, none through a scalar tail
        float[] x = new float[length];
        float[] dy = new float[length];
        Arrays.fill(x, MEAN);
        for (int i = 0; i < length; i++) {
            dy[i] = 1 + i / 64f;
        }
        Views<B> views = Views.of(loops, x, dy);
        Map<FusedActivation, IActivation> activations = Map.of(
                new FusedActivation(FusedActivation.Kind.LEAKYRELU, slope), new ActivationLReLU(slope),
                new FusedActivation(FusedActivation.Kind.RELU, 0), new ActivationReLU());
        for (Map.Entry<FusedActivation, IActivation> entry : activations.entrySet()) {
            FusedActivation activation = entry.getKey();
            float[] expectedFactor = entry.getValue().backprop(Nd4j.createFromArray(edges),
                    Nd4j.ones(DataType.FLOAT, edges.length)).getFirst().toFloatVector();
            for (int e = 0; e < edges.length; e++) {
                // pre = (x - MEAN) * 1 + edge = edge exactly
                float edge = edges[e];
                String where = name + " " + activation.kind() + ", pre-activation " + edge;
                views.outArray().assign(0);
                loops.gatedInputGradient(views.x(), views.dy(), views.out(), 0, length, MEAN, 1f, edge, activation,
                        1f, 0f, 0f);
                for (int i = 0; i < length; i++) {
                    assertEquals(expectedFactor[e] * dy[i], views.outArray().getFloat(i), 0f, where + ": dx at " + i);
                }
                FloatLoops.Sums sums = new FloatLoops.Sums();
                loops.gatedGradientSums(views.x(), views.dy(), 0, length, MEAN, 1f, edge, activation, sums);
                double dySum = 0;
                for (float value : dy) {
                    dySum += value;
                }
                assertEquals(expectedFactor[e] * dySum, sums.plain, 1e-5 * dySum, where + ": sum of g");
                float[] anchor = new float[length];
                float[] ones = new float[length];
                float[] offsets = new float[length];
                Arrays.fill(anchor, MEAN);
                Arrays.fill(ones, 1f);
                Arrays.fill(offsets, edge);
                views.outArray().assign(0);
                FloatLoops.RowGate gate = new FloatLoops.RowGate(ones, offsets, activation);
                loops.rowInputGradient(views.x(), views.dy(), views.out(), 0, length, 1, length, anchor, gate, ones,
                        new float[length], new float[length]);
                for (int i = 0; i < length; i++) {
                    assertEquals(expectedFactor[e] * dy[i], views.outArray().getFloat(i), 0f,
                            where + ": row dx at " + i);
                }
                float[] rowSums = new float[length];
                float[] products = new float[length];
                loops.rowGradientSums(views.x(), views.dy(), 0, length, 1, length, anchor, gate, rowSums, products);
                for (int c = 0; c < length; c++) {
                    assertEquals(expectedFactor[e] * dy[c], rowSums[c], 0f, where + ": row sum of g at " + c);
                }
                assertEquals(expectedFactor[e], (float) activation.derivative(edge), 0f, where + ": in double");
                float expectedOutput = edge > 0 ? edge : activation.negativeSlope() * edge;
                views.outArray().assign(1);
                loops.normalize(views.x(), views.out(), 0, length, MEAN, 1f, edge, activation);
                for (int i = 0; i < length; i++) {
                    assertEquals(expectedOutput, views.outArray().getFloat(i), 0f, where + ": output at " + i);
                }
                views.outArray().assign(1);
                loops.rowNormalize(views.x(), views.out(), 0, length, 1, length, anchor, ones, offsets, gate);
                for (int i = 0; i < length; i++) {
                    assertEquals(expectedOutput, views.outArray().getFloat(i), 0f, where + ": row output at " + i);
                }
            }
        }
        Reference.reachabilityFence(views);
    }

    /** Every element of the rows holds the expected value, and every element outside them is untouched (0). */
    /**
     * The whole-vector binary16 conversions against {@link Elements}' scalar ones, bit for bit: every binary16 value
     * widened, and narrowed back from a buffer of the loops' own (at an offset); floats narrowed at every exponent around the
     * rounding boundaries (exact, ties, one off either side, carries into the exponent and into infinity), across the
     * subnormal range, and along a stride through all 2^32 bit patterns. Runs start off a vector boundary and end in a
     * tail.
     */
    /**
     * The copies of masked runs: copy moves exactly its range between an array and a work buffer, bit for bit (NaN
     * payloads too), and clear zeroes exactly its range, at offsets and lengths around whole vectors.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void copyAndClearTouchExactlyTheirRange(String name, FloatLoops<B> loops) {
        int size = 200;
        INDArray array = Nd4j.create(DataType.FLOAT, size);
        ByteBuffer bytes = Elements.bytes(array);
        B view = loops.view(array);
        B own = loops.allocate(size);
        for (int[] range : new int[][]{{0, 0}, {3, 1}, {5, 16}, {7, 33}, {1, 130}, {0, 200}}) {
            int from = range[0];
            int length = range[1];
            for (int i = 0; i < size; i++) {
                bytes.putInt(i * Float.BYTES, 0x7fc00000 + i);   // NaNs with distinct payloads
            }
            loops.clear(own, 0, size);
            loops.copy(view, from, own, size - from - length, length);
            loops.clear(view, from, length);
            for (int i = 0; i < size; i++) {
                boolean inRange = i >= from && i < from + length;
                int expected = inRange ? 0 : 0x7fc00000 + i;
                assertEquals(expected, bytes.getInt(i * Float.BYTES), name + " clear " + from + "+" + length
                        + " at " + i);
            }
            loops.copy(own, size - from - length, view, from, length);
            for (int i = from; i < from + length; i++) {
                assertEquals(0x7fc00000 + i, bytes.getInt(i * Float.BYTES), name + " copy at " + i);
            }
        }
        Reference.reachabilityFence(array);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("loops")
    <B extends Buffer> void halfConversionsMatchTheScalarOnesBitForBit(String name, FloatLoops<B> loops) {
        int from = 3;
        int count = 1 << 16;
        INDArray halfArray = Nd4j.create(DataType.HALF, from + count + 5);
        INDArray narrowedArray = Nd4j.create(DataType.HALF, from + count + 5);
        INDArray floatArray = Nd4j.create(DataType.FLOAT, count);
        ByteBuffer halves = Elements.bytes(halfArray);
        ByteBuffer narrowed = Elements.bytes(narrowedArray);
        ByteBuffer floats = Elements.bytes(floatArray);
        B floatView = loops.view(floatArray);
        for (int bits = 0; bits < count; bits++) {
            halves.putShort((from + bits) * Short.BYTES, (short) bits);
        }
        loops.widenHalves(halves, from, floatView, 0, count);
        B own = loops.allocate(count + 5);
        loops.widenHalves(halves, from, own, 5, count);
        loops.narrowToHalves(own, 5, narrowed, from, count);
        for (int bits = 0; bits < count; bits++) {
            float expected = Elements.halfToFloat((short) bits);
            short back = narrowed.getShort((from + bits) * Short.BYTES);
            if (floats.getInt(bits * Float.BYTES) != Float.floatToRawIntBits(expected)
                    || (Float.isNaN(expected) ? !Float.isNaN(Elements.halfToFloat(back)) : back != (short) bits)) {
                fail(name + ": half 0x" + Integer.toHexString(bits) + " widened to "
                        + Float.intBitsToFloat(floats.getInt(bits * Float.BYTES)) + ", back 0x"
                        + Integer.toHexString(back & 0xffff));
            }
        }
        List<Integer> boundaries = new ArrayList<>();
        for (int signAndExponent = 0; signAndExponent < 512; signAndExponent++) {
            for (int kept : new int[]{0, 1, 0x2aa, 0x3fe, 0x3ff}) {
                for (int dropped : new int[]{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff}) {
                    boundaries.add(signAndExponent << 23 | kept << 13 | dropped);
                }
            }
        }
        checkNarrowing(name, loops, floatArray, narrowed, from, boundaries.stream().mapToLong(b -> b & 0xffffffffL));
        long subnormalStart = Float.floatToRawIntBits(0x1p-26f);
        checkNarrowing(name, loops, floatArray, narrowed, from, LongStream.range(0, 2_000_000)
                .map(i -> subnormalStart + 53 * i));
        checkNarrowing(name, loops, floatArray, narrowed, from, LongStream.range(0, 4_000_000)
                .map(i -> 1073L * i));
        Reference.reachabilityFence(halfArray);
        Reference.reachabilityFence(narrowedArray);
        Reference.reachabilityFence(floatArray);
    }

    /** Narrows the floats of the given bit patterns, a buffer at a time, and compares with the scalar rounding. */
    private static <B extends Buffer> void checkNarrowing(String name, FloatLoops<B> loops, INDArray floatArray,
                                                         ByteBuffer halves, int from,
                                                         LongStream patterns) {
        int capacity = (int) floatArray.length();
        ByteBuffer floats = Elements.bytes(floatArray);
        B floatView = loops.view(floatArray);
        PrimitiveIterator.OfLong bits = patterns.iterator();
        while (bits.hasNext()) {
            int count = 0;
            while (count < capacity - 1 && bits.hasNext()) {   // one short: the last narrowing ends in a tail
                floats.putInt(count++ * Float.BYTES, (int) bits.nextLong());
            }
            loops.narrowToHalves(floatView, 0, halves, from, count);
            for (int i = 0; i < count; i++) {
                float value = floats.getFloat(i * Float.BYTES);
                short actual = halves.getShort((from + i) * Short.BYTES);
                if (actual != Elements.floatToHalf(value)) {
                    fail(name + ": float " + value + " (0x" + Integer.toHexString(Float.floatToRawIntBits(value))
                            + ") narrowed to 0x" + Integer.toHexString(actual & 0xffff) + ", expected 0x"
                            + Integer.toHexString(Elements.floatToHalf(value) & 0xffff));
                }
            }
        }
    }

    private static void checkRows(INDArray out, int from, int stride, int rows, int width, String where,
                                  Expected expected) {
        for (int i = 0; i < out.length(); i++) {
            int row = (i - from) / stride;
            int column = (i - from) % stride;
            boolean inside = i >= from && row < rows && column < width;
            assertEquals(inside ? expected.at(i, column) : 0.0, out.getDouble(i), 1e-5, where + " at " + i);
        }
    }

    /** The double-arithmetic value at element i, column c. */
    private interface Expected {
        double at(int i, int c);
    }

    /**
     * x, dy and an output array of their size, and the loops' views of them. The views do not keep the arrays'
     * memory alive: a test holds the record until its last loop call ({@link Reference#reachabilityFence}).
     */
    private record Views<B extends Buffer>(INDArray xArray, INDArray dyArray, INDArray outArray, B x, B dy, B out) {
        static <B extends Buffer> Views<B> of(FloatLoops<B> loops, float[] x, float[] dy) {
            INDArray xArray = Nd4j.createFromArray(x);
            INDArray dyArray = Nd4j.createFromArray(dy);
            INDArray outArray = Nd4j.createFromArray(new float[x.length]);
            return new Views<>(xArray, dyArray, outArray, loops.view(xArray), loops.view(dyArray),
                    loops.view(outArray));
        }
    }

    /** max(1, |value|), and 1 for NaN. */
    private static double scaleOf(double value) {
        return Double.isNaN(value) ? 1 : Math.max(1, Math.abs(value));
    }

    private static float[] values(Random random, int size, double mean, double std) {
        float[] values = new float[size];
        for (int i = 0; i < size; i++) {
            values[i] = (float) (mean + std * random.nextGaussian());
        }
        return values;
    }
}
