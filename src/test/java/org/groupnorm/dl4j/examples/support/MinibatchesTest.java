package org.groupnorm.dl4j.examples.support;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

class MinibatchesTest {

    /** 11 images of 1x2x3 whose every pixel holds the image's index; labels one-hot of index % 4. */
    private static DataSet indexed() {
        INDArray features = Nd4j.create(DataType.FLOAT, 11, 1, 2, 3);
        INDArray labels = Nd4j.create(DataType.FLOAT, 11, 4);
        for (int i = 0; i < 11; i++) {
            features.slice(i).assign(i);
            labels.putScalar(i, i % 4, 1);
        }
        return new DataSet(features, labels);
    }

    private static List<Integer> indices(Minibatches batches) {
        List<Integer> seen = new ArrayList<>();
        for (DataSet batch : batches) {
            assertArrayEquals(new long[]{3, 1, 2, 3}, batch.getFeatures().shape(), "the images' own shape");
            for (int row = 0; row < 3; row++) {
                int index = batch.getFeatures().slice(row).getInt(0, 0, 0);
                assertEquals(6.0 * index, batch.getFeatures().slice(row).sumNumber().doubleValue(), "one whole image");
                assertEquals(index % 4, batch.getLabels().getRow(row).argMax().getInt(0), "its own label");
                seen.add(index);
            }
        }
        return seen;
    }

    @Test
    void anEpochHoldsFullBatchesOfDistinctExamplesInASeededOrder() {
        Minibatches epoch0 = new Minibatches(indexed(), 3, 42, 0);
        assertEquals(3, epoch0.count(), "the last 2 of 11 examples make no full batch of 3");
        assertEquals(9, epoch0.examples());
        List<Integer> order = indices(epoch0);
        assertEquals(9, new HashSet<>(order).size());
        assertEquals(order, indices(new Minibatches(indexed(), 3, 42, 0)), "same seed and epoch, same order");
        assertEquals(order, indices(epoch0), "iterable again");
        Set<List<Integer>> orders = new HashSet<>();
        for (int epoch = 0; epoch < 5; epoch++) {
            orders.add(indices(new Minibatches(indexed(), 3, 42, epoch)));
        }
        assertTrue(orders.size() > 1, "epochs reshuffle");
        assertNotEquals(order, indices(new Minibatches(indexed(), 3, 7, 0)), "another seed, another order");
    }
}
