package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.deeplearning4j.nn.gradient.Gradient;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * The layer computes the same values whatever the memory the network hands it: input and output gradient in c
 * order, in f order (DL4J's recurrent layers hand their activations and epsilons on in f order), as a view at an
 * offset into a larger array (a slice of a batch), or as a strided view (a permutation of another array). The values
 * are those of the same call on c-order copies, bit for bit: the layer copies what it cannot address into c order
 * and runs the same arithmetic on it. Sequences carry a mask (the second example padded at its end), placed alike.
 */
class MemoryLayoutTest {

    private static final int CHANNELS = 6;
    private static final int GROUPS = 3;

    /** How an array of the given values is laid out in memory before the layer sees it. */
    private enum Placement {
        C_ORDER(values -> values.dup('c')),
        F_ORDER(values -> values.dup('f')),
        /** The values as the middle part of a c-order array of three times as many examples. */
        OFFSET_VIEW(values -> {
            long examples = values.size(0);
            long[] shape = values.shape().clone();
            shape[0] = 3 * examples;
            INDArray larger = Nd4j.rand(values.dataType(), shape);
            INDArrayIndex[] middle = new INDArrayIndex[values.rank()];
            middle[0] = NDArrayIndex.interval(examples, 2 * examples);
            for (int d = 1; d < middle.length; d++) {
                middle[d] = NDArrayIndex.all();
            }
            INDArray view = larger.get(middle);
            view.assign(values);
            return view;
        }),
        /** The values as a permuted view of an array with the last two dimensions swapped. */
        PERMUTED_VIEW(values -> {
            int rank = values.rank();
            int[] swap = new int[rank];
            for (int d = 0; d < rank; d++) {
                swap[d] = d;
            }
            swap[rank - 2] = rank - 1;
            swap[rank - 1] = rank - 2;
            return values.permute(swap).dup('c').permute(swap);
        });

        final UnaryOperator<INDArray> place;

        Placement(UnaryOperator<INDArray> place) {
            this.place = place;
        }
    }

    /**
     * Every placement but c order for each layout, and 1x1 maps ([N, C, 1, 1], laid out as FF input), whose strides
     * ([C, 1, 1, 1]) are not ND4J's "default" ones although both engines run them in place when they are c-contiguous,
     * also as a view at an offset (permuting their two dimensions of size 1 leaves them contiguous: not a case).
     */
    static List<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        for (Engine engine : new Engine[] {Engine.KERNEL, Engine.PORTABLE}) {
            for (DataType type : new DataType[] {DataType.FLOAT, DataType.HALF, DataType.DOUBLE}) {
                for (TensorLayout layout : new TensorLayout[] {TensorLayout.NCW, TensorLayout.NWC, TensorLayout.NCHW,
                        TensorLayout.NHWC}) {
                    for (Placement placement : Placement.values()) {
                        if (placement != Placement.C_ORDER) {
                            cases.add(Arguments.of(engine, type, layout, shapeOf(layout), placement));
                        }
                    }
                }
                for (Placement placement : new Placement[] {Placement.F_ORDER, Placement.OFFSET_VIEW}) {
                    cases.add(Arguments.of(engine, type, TensorLayout.NCHW, new long[] {2, CHANNELS, 1, 1},
                            placement));
                }
            }
        }
        return cases;
    }

    private static long[] shapeOf(TensorLayout layout) {
        return layout.rank() == 3
                ? (layout.channelsLast() ? new long[] {2, 7, CHANNELS} : new long[] {2, CHANNELS, 7})
                : (layout.channelsLast() ? new long[] {2, 5, 4, CHANNELS} : new long[] {2, CHANNELS, 5, 4});
    }

    @ParameterizedTest(name = "{0} {1} {2} {3} {4}")
    @MethodSource("cases")
    void valuesDoNotDependOnMemoryLayout(Engine engine, DataType type, TensorLayout layout, long[] shape,
                                         Placement placement) {
        Nd4j.getRandom().setSeed(11);
        INDArray x = Nd4j.randn(DataType.DOUBLE, shape).muli(2).addi(0.5).castTo(type);
        INDArray dy = Nd4j.randn(DataType.DOUBLE, shape).castTo(type);
        INDArray gamma = Nd4j.rand(DataType.DOUBLE, CHANNELS).addi(0.5);
        INDArray beta = Nd4j.randn(DataType.DOUBLE, CHANNELS);

        INDArray mask = null;
        if (layout.rank() == 3) {
            mask = Nd4j.ones(type, 2, 7);
            mask.get(NDArrayIndex.point(1), NDArrayIndex.interval(4, 7)).assign(0);
        }

        Result expected = run(engine, type, layout, gamma, beta, x.dup('c'), dy.dup('c'), mask);
        INDArray placedX = placement.place.apply(x);
        INDArray placedDy = placement.place.apply(dy);
        INDArray placedMask = mask == null ? null : placement.place.apply(mask);
        assertFalse(GroupNormKernel.isDirectlyAddressable(placedX) && placement != Placement.OFFSET_VIEW,
                "the placement must give memory the layer cannot address directly: " + placement);
        Result actual = run(engine, type, layout, gamma, beta, placedX, placedDy, placedMask);

        String what = engine + " " + type + " " + layout + " " + placement;
        assertArrayEquals(expected.y, actual.y, what + ": output");
        assertArrayEquals(expected.dx, actual.dx, what + ": input gradient");
        assertArrayEquals(expected.dGamma, actual.dGamma, what + ": gamma gradient");
        assertArrayEquals(expected.dBeta, actual.dBeta, what + ": beta gradient");
        // The layer must not write into the arrays it was given.
        assertArrayEquals(values(x), values(placedX), what + ": input changed");
        assertArrayEquals(values(dy), values(placedDy), what + ": output gradient changed");
    }

    private record Result(double[] y, double[] dx, double[] dGamma, double[] dBeta) {
    }

    private static Result run(Engine engine, DataType type, TensorLayout layout, INDArray gamma, INDArray beta,
                              INDArray x, INDArray dy, INDArray mask) {
        GroupNormHarness harness = new GroupNormHarness(new GroupNormalization.Builder().nIn(CHANNELS)
                .groups(GROUPS).activation(Activation.SWISH).dataFormat(layout).build(), type, engine)
                .withParams(gamma, beta);
        double[] y = values(harness.forward(x, mask));
        Pair<Gradient, INDArray> gradients = harness.backward(dy);
        return new Result(y, values(gradients.getSecond()),
                values(gradients.getFirst().getGradientFor(GroupNormParamInitializer.GAMMA)),
                values(gradients.getFirst().getGradientFor(GroupNormParamInitializer.BETA)));
    }

    /** The array's values in c order of its logical shape, as doubles. */
    private static double[] values(INDArray array) {
        return array.castTo(DataType.DOUBLE).dup('c').data().asDouble();
    }
}
