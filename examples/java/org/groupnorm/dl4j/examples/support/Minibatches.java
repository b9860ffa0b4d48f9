package org.groupnorm.dl4j.examples.support;

import java.util.Arrays;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Random;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

/**
 * One epoch's minibatches of a data set, shuffled: the order is a permutation drawn from the seed and the epoch, so
 * every network trained with the same seed sees the same batches in the same order. Full batches only (the epoch's
 * last partial batch is dropped, so every step has the same size, which matters to BatchNorm). Each batch is copied
 * out of the data set when the iteration reaches it: an epoch never holds a second copy of the data.
 */
public final class Minibatches implements Iterable<DataSet> {

    private final INDArray features;
    private final INDArray labels;
    private final long[] exampleShape;
    private final int batchSize;
    private final int[] order;

    public Minibatches(DataSet data, int batchSize, long seed, int epoch) {
        int examples = data.numExamples();
        this.features = data.getFeatures().reshape(examples, -1);
        this.labels = data.getLabels();
        this.exampleShape = Arrays.copyOfRange(data.getFeatures().shape(), 1, data.getFeatures().rank());
        this.batchSize = batchSize;
        this.order = permutation(examples, new Random(seed * 1_000_003L + epoch));
    }

    /** Batches in an epoch (steps). */
    public int count() {
        return order.length / batchSize;
    }

    /** Examples in an epoch's full batches. */
    public long examples() {
        return examplesPerEpoch(order.length, batchSize);
    }

    /** Examples in the full batches of {@code batchSize} that {@code examples} examples make. */
    public static long examplesPerEpoch(int examples, int batchSize) {
        return (long) examples / batchSize * batchSize;
    }

    @Override
    public Iterator<DataSet> iterator() {
        return new Iterator<>() {
            private int next;

            @Override
            public boolean hasNext() {
                return next < count();
            }

            @Override
            public DataSet next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                int[] rows = Arrays.copyOfRange(order, next * batchSize, (next + 1) * batchSize);
                next++;
                long[] shape = new long[exampleShape.length + 1];
                shape[0] = batchSize;
                System.arraycopy(exampleShape, 0, shape, 1, exampleShape.length);
                return new DataSet(Nd4j.pullRows(features, 1, rows).reshape(shape), Nd4j.pullRows(labels, 1, rows));
            }
        };
    }

    /** Fisher-Yates: every order equally likely. */
    private static int[] permutation(int size, Random random) {
        int[] order = new int[size];
        for (int i = 0; i < size; i++) {
            order[i] = i;
        }
        for (int i = size - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int swap = order[i];
            order[i] = order[j];
            order[j] = swap;
        }
        return order;
    }
}
