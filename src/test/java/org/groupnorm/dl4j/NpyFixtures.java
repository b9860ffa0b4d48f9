package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.util.Arrays;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/** Reference arrays computed elsewhere (PyTorch, float64) as .npy files, and the comparison every parity test uses. */
final class NpyFixtures {

    private NpyFixtures() {
    }

    /** {@code dir/array.npy} as DOUBLE. */
    static INDArray load(File dir, String array) {
        return Nd4j.createFromNpyFile(new File(dir, array + ".npy")).castTo(DataType.DOUBLE);
    }

    /**
     * Same shape, and a largest absolute difference of at most {@code float64Tolerance} when the computation ran in
     * DOUBLE, else at most {@code relativeTolerance} times the largest |expected| (what rounding to the narrower type
     * allows).
     */
    static void assertClose(String what, INDArray expected, INDArray actual, DataType type, double float64Tolerance,
                            double relativeTolerance) {
        assertArrayEquals(expected.shape(), actual.shape(), what + " shape");
        double maxError = expected.sub(actual.castTo(DataType.DOUBLE)).amaxNumber().doubleValue();
        double tolerance = type == DataType.DOUBLE ? float64Tolerance
                : relativeTolerance * Math.max(1e-12, expected.amaxNumber().doubleValue());
        assertTrue(maxError <= tolerance, what + ": max abs error " + maxError + " > " + tolerance
                + " (" + type + ", shape " + Arrays.toString(expected.shape()) + ")");
    }
}
