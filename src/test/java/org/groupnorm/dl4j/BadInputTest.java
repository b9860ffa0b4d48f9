package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.deeplearning4j.exception.DL4JInvalidInputException;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.factory.Nd4j;

/** Every invalid configuration or input fails with a message that names the layer, the value and the rule. */
class BadInputTest {

    /** The action throws exactly {@code type}, with every fragment in its message. */
    private static void assertFailsWith(Class<? extends Exception> type, Executable action, String... fragments) {
        Exception e = assertThrows(type, action);
        assertEquals(type, e.getClass(), e.toString());
        for (String fragment : fragments) {
            assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' lacks '" + fragment + "'");
        }
    }

    @Test
    void channelsNotDivisibleByGroups() {
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("gn2").nIn(30).groups(4).build(),
                "GroupNormalization 'gn2'", "30 channels are not divisible by 4 groups");
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("gs").nIn(30).groupSize(4).build(),
                "'gs'", "30 channels are not divisible by groupSize 4");
    }

    @Test
    void channelsNotDivisibleByGroupsFoundFromTheInputType() {
        assertFailsWith(IllegalArgumentException.class, () -> new NeuralNetConfiguration.Builder().list()
                        .layer(new ConvolutionLayer.Builder(3, 3).nOut(30).build())
                        .layer(new GroupNormalization.Builder().name("gn2").groups(4).build())
                        .setInputType(InputType.convolutional(8, 8, 1)).build(),
                "GroupNormalization 'gn2'", "30 channels are not divisible by 4 groups");
    }

    @Test
    void nonPositiveOrTooManyGroups() {
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("g").groups(0).build(), "'g'",
                "groups must be > 0, got 0");
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("g").groups(-2).build(), "got -2");
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("s").groupSize(0).build(), "'s'",
                "groupSize must be > 0, got 0");
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("g").nIn(16).groups(32).build(), "'g'",
                "32 groups are more than the 16 channels");
    }

    @Test
    void bothGroupsAndGroupSize() {
        assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("g").groups(4).groupSize(2).build(), "'g'",
                "groups (4) or groupSize (2), not both");
    }

    @Test
    void nonPositiveOrNonFiniteEps() {
        for (double eps : new double[]{0, -1e-5, Double.NaN, Double.POSITIVE_INFINITY}) {
            assertFailsWith(IllegalArgumentException.class, () -> new GroupNormalization.Builder().name("e").eps(eps).build(), "'e'",
                    "eps must be a finite number > 0, got " + eps);
        }
    }

    @Test
    void anActivationTheKernelEngineCannotFuse() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().name("a").nIn(4).groups(2)
                .activation(Activation.ELU).build(), DataType.FLOAT, Engine.KERNEL);
        assertFailsWith(IllegalStateException.class, () -> gn.forward(Nd4j.rand(DataType.FLOAT, 2, 4, 5, 5)),
                "'a'", "KERNEL", "elu", "PORTABLE");
    }

    @Test
    void inputWithAnotherChannelCountThanConfigured() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().name("gn").nIn(6).groups(3)
                .build(), DataType.FLOAT, Engine.AUTO);
        assertFailsWith(DL4JInvalidInputException.class, () -> gn.forward(Nd4j.rand(DataType.FLOAT, 2, 5, 3, 3)), "'gn'", "input has 5 channels",
                "nIn=6");
    }

    @Test
    void inputOfAnotherRankThanTheLayout() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().name("gn").nIn(6).groups(3)
                .dataFormat(TensorLayout.NCHW).build(), DataType.FLOAT, Engine.AUTO);
        assertFailsWith(DL4JInvalidInputException.class, () -> gn.forward(Nd4j.rand(DataType.FLOAT, 2, 6, 3)), "'gn'",
                "expected a rank-4 NCHW input, got rank 3");
    }

    @Test
    void inputOfUnsupportedRank() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().name("gn").nIn(6).groups(3)
                .build(), DataType.FLOAT, Engine.AUTO);
        assertFailsWith(DL4JInvalidInputException.class, () -> gn.forward(Nd4j.rand(DataType.FLOAT, 2, 6, 2, 2, 2, 2)), "'gn'", "rank 6");
    }

    @Test
    void unsupportedInputType() {
        GroupNormalization gn = new GroupNormalization.Builder().name("gn").groups(2).build();
        assertFailsWith(IllegalStateException.class, () -> gn.getOutputType(0, null), "'gn'", "got null");
        assertFailsWith(IllegalStateException.class, () -> new GroupNormalization.Builder().name("gn").groups(2).dataFormat(TensorLayout.NCW)
                .build().setNIn(InputType.convolutional(4, 4, 2), false), "'gn'", "dataFormat NCW",
                "rank 4");
    }

    @Test
    void maskOnConvolutionalInput() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().name("gn").nIn(4).groups(2)
                .build(), DataType.FLOAT, Engine.AUTO);
        assertFailsWith(DL4JInvalidInputException.class, () -> gn.forward(Nd4j.rand(DataType.FLOAT, 2, 4, 3, 3), Nd4j.ones(DataType.FLOAT, 2, 9)),
                "'gn'", "a mask of shape [2, 9]", "[N, T] for recurrent input");
    }

    @Test
    void settersCheckTheirValueLikeTheBuilder() {
        GroupNormalization gn = new GroupNormalization.Builder().name("s").build();
        assertFailsWith(IllegalArgumentException.class, () -> gn.setGroups(-4), "GroupNormalization 's'", "groups must be > 0, got -4");
        assertFailsWith(IllegalArgumentException.class, () -> gn.setGroupSize(-1), "'s'", "groupSize must be > 0, got -1");
        assertFailsWith(IllegalArgumentException.class, () -> gn.setEps(-1), "'s'", "eps must be a finite number > 0, got -1.0");
        gn.setGroupSize(2);   // groups is still 32: which one is meant? Said when the layer is used.
        assertFailsWith(IllegalArgumentException.class, gn::validate, "'s'", "set groups (32) or groupSize (2), not both");
    }

    /** Hand-edited or generated JSON: the values that used to divide by zero, size arrays negatively, or output NaN. */
    @Test
    void badValuesInJsonFailWithTheBuildersMessages() {
        String json = TestNetworks.forLayout(TensorLayout.NCHW, new GroupNormalization.Builder().name("gn").groups(2),
                new org.nd4j.linalg.learning.config.Sgd(0.1), DataType.FLOAT).net().getLayerWiseConfigurations()
                .toJson();
        String noGroups = json.replace("\"groups\" : 2", "\"groups\" : 0");
        assertFailsWith(IllegalArgumentException.class, () -> new org.deeplearning4j.nn.multilayer.MultiLayerNetwork(
                        org.deeplearning4j.nn.conf.MultiLayerConfiguration.fromJson(noGroups)).init(),
                "GroupNormalization 'gn'", "groups must be > 0, got 0");
        String negative = json.replace("\"groups\" : 2", "\"groups\" : -4");
        assertFailsWith(RuntimeException.class, () -> org.deeplearning4j.nn.conf.MultiLayerConfiguration.fromJson(negative),
                "groups must be > 0, got -4");
        String badEps = json.replaceFirst("\"eps\" : [0-9.eE-]+", "\"eps\" : -1.0");
        assertFailsWith(RuntimeException.class, () -> org.deeplearning4j.nn.conf.MultiLayerConfiguration.fromJson(badEps),
                "eps must be a finite number > 0, got -1.0");
    }

    @Test
    void settingNInAloneKeepsNOutEqual() {
        GroupNormalization gn = new GroupNormalization.Builder().nIn(8).groups(2).build();
        gn.setNIn(12);   // what TransferLearning.nOutReplace does to the layer after the one it changes
        assertEquals(12, gn.getNOut());
    }

    @Test
    void unknownEngineNamesTheValidOnes() {
        String before = System.getProperty("groupnorm.engine");
        System.setProperty("groupnorm.engine", "cuda");
        try {
            assertFailsWith(IllegalArgumentException.class, () -> new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2).build(),
                    DataType.FLOAT, Engine.AUTO), "-Dgroupnorm.engine=cuda is not an engine",
                    "auto, kernel, portable, samediff");
        } finally {
            if (before == null) {
                System.clearProperty("groupnorm.engine");
            } else {
                System.setProperty("groupnorm.engine", before);
            }
        }
    }

    @Test
    void unknownChannelCountAtInit() {
        GroupNormalization gn = new GroupNormalization.Builder().name("gn").groups(2).build();
        assertFailsWith(IllegalStateException.class, () -> new GroupNormHarness(gn, DataType.FLOAT, Engine.AUTO), "'gn'",
                "channel count is unknown");
    }
}
