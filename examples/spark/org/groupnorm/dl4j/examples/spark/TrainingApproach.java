package org.groupnorm.dl4j.examples.spark;

import java.util.Locale;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.spark.api.RDDTrainingApproach;
import org.deeplearning4j.spark.impl.paramavg.util.ExportSupport;

/**
 * How parameter averaging hands the minibatches to the workers. Export (DL4J's default, and faster: each worker reads
 * its share from files) needs storage every executor can read, so it works in local mode or with a shared default
 * file system (HDFS, S3); Direct (the minibatches travel inside the RDD) works everywhere. {@link #AUTO} picks Export
 * when DL4J says it is supported and Direct otherwise, so a first run on a cluster without HDFS trains instead of
 * failing with "Export training approach is not supported in the current environment".
 */
public enum TrainingApproach {
    AUTO, DIRECT, EXPORT;

    /** The flag's value, in any case. */
    public static TrainingApproach parse(String value) {
        try {
            return valueOf(value.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--approach " + value + ": expected auto, direct or export");
        }
    }

    /**
     * DL4J's approach for this context.
     *
     * @throws IllegalArgumentException for EXPORT where the default file system is local and the master is not
     */
    public RDDTrainingApproach resolve(JavaSparkContext sc) {
        boolean exportWorks = ExportSupport.exportSupported(sc);
        switch (this) {
            case DIRECT:
                return RDDTrainingApproach.Direct;
            case EXPORT:
                if (!exportWorks) {
                    throw new IllegalArgumentException("--approach export: master " + sc.master() + " is not local "
                            + "and the default file system is " + sc.hadoopConfiguration().get("fs.defaultFS")
                            + ", which the executors cannot share; set spark.hadoop.fs.defaultFS to HDFS/S3 or use "
                            + "--approach direct");
                }
                return RDDTrainingApproach.Export;
            default:
                return exportWorks ? RDDTrainingApproach.Export : RDDTrainingApproach.Direct;
        }
    }

    /** One line saying what was chosen and why. */
    public String describe(JavaSparkContext sc) {
        RDDTrainingApproach chosen = resolve(sc);
        return String.format(Locale.ROOT, "training approach %s (%s; master %s, default file system %s)", chosen,
                this == AUTO ? "chosen automatically" : "forced by --approach", sc.master(),
                sc.hadoopConfiguration().get("fs.defaultFS"));
    }
}
