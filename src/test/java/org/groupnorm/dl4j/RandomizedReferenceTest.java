package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.deeplearning4j.nn.gradient.Gradient;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationLReLU;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Seeded random cases, each drawing every setting at once (layout, sizes that leave SIMD tails and rows shorter than a
 * vector, groups, float32/float16/float64, engine, an activation fused or run through DL4J's own, a mask with 0, 0.5
 * and 1 values and sometimes an all-padding example, scale or center off, eps, means far from 0), and checking the
 * layer's output and every gradient against the plain double reference ({@link ReferenceGroupNorm}, gradients by
 * central differences) followed by DL4J's activation in double. The dedicated tests pin each feature alone; these
 * catch the combinations nobody wrote down (such a harness found fused LeakyReLU's gradient at 0 disagreeing between
 * engines).
 */
class RandomizedReferenceTest {

    private static final int CASES = 240;
    private static final TensorLayout[] LAYOUTS = TensorLayout.values();
    private static final DataType[] TYPES = {DataType.FLOAT, DataType.FLOAT, DataType.HALF, DataType.DOUBLE};
    private static final Activation[] ACTIVATIONS = {Activation.IDENTITY, Activation.IDENTITY, Activation.RELU,
            Activation.LEAKYRELU, Activation.SIGMOID, Activation.TANH, Activation.SWISH, Activation.ELU,
            Activation.SOFTPLUS};
    /** Fewest present elements per group (unless a whole example is padding): fewer makes the variance degenerate. */
    private static final int MIN_GROUP_ELEMENTS = 4;
    /**
     * Output gradients are 0 where a ReLU's pre-activation lies this close to its kink, so that which side the
     * engine's float rounding puts it on does not matter (exactly 0 is {@code FusedActivationTest}'s case).
     */
    private static final double KINK_BAND = 1e-3;

    /** One drawn case: everything the layer and the reference need. */
    record Case(int seed, TensorLayout layout, long[] shape, int groups, DataType type, Engine engine,
                IActivation activation, double eps, double[] x, double[] gamma, double[] beta, double[] mask,
                double[] dy) {

        int channels() {
            return (int) shape[layout.channelAxis()];
        }

        int positions() {
            return (int) layout.spatialSize(shape);
        }

        @Override
        public String toString() {
            return "seed " + seed + ": " + layout + " " + Arrays.toString(shape) + " G=" + groups + " " + type + " "
                    + engine + " " + activation + " eps=" + eps + (gamma == null ? " no scale" : "")
                    + (beta == null ? " no center" : "") + (mask == null ? "" : " masked");
        }
    }

    static Stream<Case> cases() {
        return IntStream.range(0, CASES).mapToObj(RandomizedReferenceTest::draw);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void layerEqualsTheDoubleReference(Case c) {
        double[] presence = c.mask == null ? null : Arrays.stream(c.mask).map(m -> m != 0 ? 1 : 0).toArray();
        double[] pre = ReferenceGroupNorm.forward(c.x, c.shape, c.layout, c.groups, c.eps, c.gamma, c.beta, presence);
        double[] expectedY = masked(c.activation.getActivation(Nd4j.createFromArray(pre.clone()), false)
                .toDoubleVector(), presence, c);
        double[] gradThroughActivation = masked(c.activation.backprop(Nd4j.createFromArray(pre.clone()),
                Nd4j.createFromArray(c.dy.clone())).getFirst().toDoubleVector(), presence, c);
        double[] expectedDx = ReferenceGroupNorm.inputGradient(c.x, c.shape, c.layout, c.groups, c.eps, c.gamma,
                c.beta, presence, gradThroughActivation);

        GroupNormalization.Builder builder = new GroupNormalization.Builder().nIn(c.channels()).groups(c.groups)
                .eps(c.eps).dataFormat(c.layout).scale(c.gamma != null).center(c.beta != null);
        if (!c.activation.equals(Activation.IDENTITY.getActivationFunction())) {
            builder.activation(c.activation);
        }
        GroupNormHarness gn = new GroupNormHarness(builder.build(), c.type, c.engine);
        if (c.gamma != null) {
            gn.layer.setParam(GroupNormParamInitializer.GAMMA, Nd4j.createFromArray(c.gamma).castTo(c.type));
        }
        if (c.beta != null) {
            gn.layer.setParam(GroupNormParamInitializer.BETA, Nd4j.createFromArray(c.beta).castTo(c.type));
        }
        INDArray mask = c.mask == null ? null
                : Nd4j.createFromArray(c.mask).reshape(c.shape[0], c.mask.length / c.shape[0]).castTo(c.type);
        INDArray y = gn.forward(array(c.x, c), mask);
        assertClose(expectedY, y, tolerance(c.type), c, "output");
        Pair<Gradient, INDArray> gradients = gn.backward(array(c.dy, c));
        assertClose(expectedDx, gradients.getSecond(), tolerance(c.type), c, "dx");
        if (c.gamma != null) {
            assertClose(ReferenceGroupNorm.gammaGradient(c.x, c.shape, c.layout, c.groups, c.eps, c.gamma, c.beta,
                    presence, gradThroughActivation), gradients.getFirst().getGradientFor("gamma"),
                    tolerance(c.type), c, "dgamma");
        }
        if (c.beta != null) {
            assertClose(perChannelSums(gradThroughActivation, c), gradients.getFirst().getGradientFor("beta"),
                    tolerance(c.type), c, "dbeta");
        }
    }

    /**
     * Largest error allowed, relative to max(1, the largest expected value). float64: the reference's central
     * differences (up to 2e-8 seen). float32: rounding, amplified where the mean is up to 400 standard deviations from
     * 0 (up to 9e-7 seen). float16: two steps of half precision, whose output and gradients are rounded to it (up to
     * 4.8e-4 seen, one step being 4.9e-4).
     */
    private static double tolerance(DataType type) {
        return switch (type) {
            case DOUBLE -> 1e-7;
            case FLOAT -> 5e-6;
            default -> 1e-3;
        };
    }

    private static Case draw(int seed) {
        Random random = new Random(seed);
        TensorLayout layout = LAYOUTS[random.nextInt(LAYOUTS.length)];
        DataType type = TYPES[random.nextInt(TYPES.length)];
        Engine engine = random.nextBoolean() ? Engine.AUTO : Engine.PORTABLE;
        Activation activation = ACTIVATIONS[random.nextInt(ACTIVATIONS.length)];
        IActivation function = activation == Activation.LEAKYRELU
                ? new ActivationLReLU(0.01 + 0.3 * random.nextDouble()) : activation.getActivationFunction();
        int groups = 1 + random.nextInt(4);
        int perGroup = 1 + random.nextInt(5);
        int examples = 1 + random.nextInt(3);
        long[] spatial = new long[layout.rank() - 2];
        for (int axis = 0; axis < spatial.length; axis++) {
            spatial[axis] = 1 + random.nextInt(spatial.length == 1 ? 40 : spatial.length == 2 ? 9 : 4);
        }
        long positions = Arrays.stream(spatial).reduce(1, (a, b) -> a * b);
        if (perGroup * positions < MIN_GROUP_ELEMENTS) {   // FF and tiny spatial sizes: more channels per group
            perGroup = (int) ((MIN_GROUP_ELEMENTS + positions - 1) / positions);
        }
        long[] shape = shape(layout, examples, groups * perGroup, spatial);
        double[] mask = (layout.rank() == 3 || layout == TensorLayout.FF) && random.nextBoolean()
                ? mask(random, examples, (int) positions, perGroup) : null;
        double eps = new double[]{1e-5, 1e-3, 0.1}[random.nextInt(3)];
        double[] x = new double[(int) Arrays.stream(shape).reduce(1, (a, b) -> a * b)];
        double std = 0.5 + 4 * random.nextDouble();
        double mean = random.nextBoolean() ? 0 : (random.nextDouble() - 0.5) * 400;
        for (int i = 0; i < x.length; i++) {
            x[i] = mean + std * random.nextGaussian();
        }
        int channels = groups * perGroup;
        double[] gamma = random.nextInt(5) == 0 ? null : uniform(random, channels, -1.5, 1.5);
        double[] beta = random.nextInt(5) == 0 ? null : uniform(random, channels, -1, 1);
        double[] dy = new double[x.length];
        for (int i = 0; i < dy.length; i++) {
            dy[i] = random.nextGaussian();
        }
        x = rounded(x, type);
        gamma = rounded(gamma, type);
        beta = rounded(beta, type);
        dy = rounded(dy, type);
        if (activation == Activation.RELU || activation == Activation.LEAKYRELU) {
            double[] pre = ReferenceGroupNorm.forward(x, shape, layout, groups, eps, gamma, beta, null);
            for (int i = 0; i < pre.length; i++) {
                if (Math.abs(pre[i]) < KINK_BAND) {
                    dy[i] = 0;
                }
            }
        }
        return new Case(seed, layout, shape, groups, type, engine, function, eps, x, gamma, beta, mask, dy);
    }

    private static long[] shape(TensorLayout layout, long examples, long channels, long[] spatial) {
        long[] shape = new long[layout.rank()];
        shape[0] = examples;
        shape[layout.channelAxis()] = channels;
        for (int axis = 1, next = 0; axis < shape.length; axis++) {
            if (axis != layout.channelAxis()) {
                shape[axis] = spatial[next++];
            }
        }
        return shape;
    }

    /**
     * [N * S] mask values: 0 (padding), 1 or 0.5 (present), at least enough present positions for
     * {@link #MIN_GROUP_ELEMENTS} per group, except that with more than one example the last may be all padding.
     */
    private static double[] mask(Random random, int examples, int positions, int perGroup) {
        int minPresent = (MIN_GROUP_ELEMENTS + perGroup - 1) / perGroup;
        double[] mask = new double[examples * positions];
        for (int n = 0; n < examples; n++) {
            boolean allPadding = examples > 1 && n == examples - 1 && random.nextInt(4) == 0;
            int present = 0;
            for (int p = 0; p < positions; p++) {
                if (!allPadding && random.nextInt(3) != 0) {
                    mask[n * positions + p] = random.nextBoolean() ? 1 : 0.5;
                    present++;
                }
            }
            for (int p = 0; !allPadding && present < minPresent && p < positions; p++) {
                if (mask[n * positions + p] == 0) {
                    mask[n * positions + p] = 1;
                    present++;
                }
            }
        }
        return mask;
    }

    private static double[] uniform(Random random, int length, double from, double to) {
        double[] values = new double[length];
        for (int i = 0; i < length; i++) {
            values[i] = from + (to - from) * random.nextDouble();
        }
        return values;
    }

    /** The values as the layer sees them: rounded to its type (null stays null). */
    private static double[] rounded(double[] values, DataType type) {
        return values == null ? null : Nd4j.createFromArray(values).castTo(type).castTo(DataType.DOUBLE)
                .toDoubleVector();
    }

    private static INDArray array(double[] values, Case c) {
        return Nd4j.createFromArray(values).reshape(c.shape).castTo(c.type);
    }

    /** The values with padded positions set to 0 (values are c-order elements of the case's array). */
    private static double[] masked(double[] values, double[] presence, Case c) {
        if (presence != null) {
            for (int n = 0; n < c.shape[0]; n++) {
                for (int ch = 0; ch < c.channels(); ch++) {
                    for (int p = 0; p < c.positions(); p++) {
                        values[ReferenceGroupNorm.offset(c.layout, n, ch, p, c.channels(), c.positions())] *=
                                presence[n * c.positions() + p];
                    }
                }
            }
        }
        return values;
    }

    /** Per-channel sums over examples and positions: dbeta from the gradient at the layer's output. */
    private static double[] perChannelSums(double[] values, Case c) {
        double[] sums = new double[c.channels()];
        for (int n = 0; n < c.shape[0]; n++) {
            for (int ch = 0; ch < c.channels(); ch++) {
                for (int p = 0; p < c.positions(); p++) {
                    sums[ch] += values[ReferenceGroupNorm.offset(c.layout, n, ch, p, c.channels(), c.positions())];
                }
            }
        }
        return sums;
    }

    /** max |expected - actual| <= tolerance * max(1, max |expected|). */
    private static void assertClose(double[] expected, INDArray actual, double tolerance, Case c, String what) {
        double[] values = actual.castTo(DataType.DOUBLE).dup('c').data().asDouble();
        double scale = 1;
        double error = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i]));
            error = Math.max(error, Math.abs(expected[i] - values[i]));
        }
        assertTrue(error <= tolerance * scale, c + ": " + what + " error " + error + " > " + tolerance + " * "
                + scale);
    }
}
