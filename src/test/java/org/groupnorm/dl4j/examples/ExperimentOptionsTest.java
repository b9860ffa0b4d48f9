package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Paths;
import java.util.List;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.junit.jupiter.api.Test;

class ExperimentOptionsTest {

    @Test
    void defaultsAreThePaperBatchSizesAndAllThreeNorms() {
        ExperimentOptions o = ExperimentOptions.parse();
        assertEquals(List.of(2, 4, 16, 32), o.batchSizes());
        assertEquals(List.of(SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP, SmallResNet.Norm.GROUP_WS), o.norms());
        assertEquals(null, o.dataFolder());
        assertEquals(null, o.addTo());
    }

    @Test
    void flagsSetTheirValues() {
        ExperimentOptions o = ExperimentOptions.parse("--batch-sizes", "8, 64", "--epochs", "5", "--full",
                "--norms", "gn", "--groups", "4", "--widths", "8,16,32", "--seed", "9", "--out", "x", "--data", "d",
                "--bn-decay", "0.99", "--add-to", "old/results.csv");
        assertEquals(List.of(8, 64), o.batchSizes());
        assertEquals(5, o.epochs());
        assertEquals(0, o.trainPerClass());
        assertEquals(0, o.testPerClass());
        assertEquals(List.of(SmallResNet.Norm.GROUP), o.norms());
        assertEquals(4, o.groups());
        assertArrayEquals(new int[]{8, 16, 32}, o.widths());
        assertEquals(9, o.seed());
        assertEquals(Paths.get("x"), o.outputFolder());
        assertEquals(Paths.get("d"), o.dataFolder());
        assertEquals(0.99, o.batchNormDecay());
        assertEquals(Paths.get("old", "results.csv"), o.addTo());
    }

    @Test
    void normsAreNamedByTheirLabelsInAnyCase() {
        assertEquals(List.of(SmallResNet.Norm.GROUP_WS, SmallResNet.Norm.BATCH),
                ExperimentOptions.parse("--norms", "gnws,BN").norms());
        assertEquals(List.of(SmallResNet.Norm.GROUP_WS), ExperimentOptions.parse("--norms", "GN+WS").norms());
    }

    @Test
    void badFlagsNameTheFlagAndValue() {
        assertMessage("unknown flag --batch", "--batch", "2");
        assertMessage("--epochs 0: must be a positive integer", "--epochs", "0");
        assertMessage("--batch-sizes two: not a number", "--batch-sizes", "two");
        assertMessage("--norms BN,LN: expected a list of BN, GN and GNWS", "--norms", "BN,LN");
        assertMessage("--norms NONE: expected a list of BN, GN and GNWS", "--norms", "NONE");
        assertMessage("--groups 3 does not divide stage width 16", "--groups", "3");
        assertMessage("flag --seed needs a value", "--seed");
        assertMessage("--bn-decay 1.5: must be in [0, 1)", "--bn-decay", "1.5");
    }

    private static void assertMessage(String expected, String... args) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ExperimentOptions.parse(args));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
