package org.groupnorm.dl4j.kernel;

/**
 * What the forward pass hands to the backward pass: each (example, group)'s mean and 1/sqrt(var + eps), indexed by
 * unit = n * G + g. {@link GroupNormKernel#forward} fills it; {@link GroupNormKernel#backward} reads it.
 */
public final class GroupStats {
    final double[] mean;
    final double[] rstd;

    /** Room for the statistics of an input with {@code examples} examples and {@code groups} groups. */
    public GroupStats(long examples, int groups) {
        this.mean = new double[Math.toIntExact(examples * groups)];
        this.rstd = new double[mean.length];
    }

    /** Whether these statistics have the size of the given call (they may still belong to another input). */
    public boolean fits(long examples, int groups) {
        return mean.length == examples * groups;
    }
}
