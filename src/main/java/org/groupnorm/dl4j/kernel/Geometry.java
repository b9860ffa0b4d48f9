package org.groupnorm.dl4j.kernel;

import org.groupnorm.dl4j.TensorLayout;

/**
 * Where the elements of one (example, group) slab are in a c-contiguous array of a given layout. In the general
 * path's work buffer a slab is stored as in the array: channel-major ([C/G][S]) for channels-first layouts,
 * position-major ([S][C/G]) for channels-last ones.
 */
final class Geometry {
    final int examples;
    final int channels;
    final int groups;
    final int positions;
    final int perGroup;
    final int slabSize;
    final boolean channelsLast;

    Geometry(long[] shape, TensorLayout layout, int groups) {
        this((int) shape[0], (int) shape[layout.channelAxis()], groups, (int) layout.spatialSize(shape),
                layout.channelsLast());
    }

    private Geometry(int examples, int channels, int groups, int positions, boolean channelsLast) {
        this.examples = examples;
        this.channels = channels;
        this.groups = groups;
        this.positions = positions;
        this.perGroup = channels / groups;
        this.slabSize = perGroup * positions;
        this.channelsLast = channelsLast;
    }

    /** The same input with {@code positions} positions per example: a masked example's present ones, side by side. */
    Geometry withPositions(int positions) {
        return new Geometry(examples, channels, groups, positions, channelsLast);
    }

    /** (example, group) slabs: the units of work and of {@link GroupStats}, unit = n * G + g. */
    int units() {
        return examples * groups;
    }

    /** Offset of example {@code n}'s first element. */
    int exampleStart(int n) {
        return n * channels * positions;
    }

    /** Index in the work buffer of channel {@code j} of the group at position {@code s}. */
    int index(int j, int s) {
        return channelsLast ? s * perGroup + j : j * positions + s;
    }

    void read(Elements array, int n, int g, double[] slab) {
        if (channelsLast) {
            for (int s = 0; s < positions; s++) {
                array.read(exampleStart(n) + s * channels + g * perGroup, slab, s * perGroup, perGroup);
            }
        } else {
            array.read(exampleStart(n) + g * slabSize, slab, 0, slabSize);
        }
    }

    void write(Elements array, int n, int g, double[] slab) {
        if (channelsLast) {
            for (int s = 0; s < positions; s++) {
                array.write(exampleStart(n) + s * channels + g * perGroup, slab, s * perGroup, perGroup);
            }
        } else {
            array.write(exampleStart(n) + g * slabSize, slab, 0, slabSize);
        }
    }

    /** 0/1 weight of every slab element of example {@code n}, from the per-position mask. */
    double[] weights(double[] masks, int n) {
        double[] weights = Scratch.doubles(Scratch.Slot.WEIGHTS, slabSize);
        for (int j = 0; j < perGroup; j++) {
            for (int s = 0; s < positions; s++) {
                weights[index(j, s)] = masks[n * positions + s];
            }
        }
        return weights;
    }
}
