package org.groupnorm.dl4j.keras;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.deeplearning4j.nn.modelimport.keras.KerasModelImport;
import org.deeplearning4j.nn.modelimport.keras.exceptions.InvalidKerasConfigurationException;
import org.deeplearning4j.nn.modelimport.keras.exceptions.UnsupportedKerasConfigurationException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.shade.jackson.databind.JsonNode;
import org.nd4j.shade.jackson.databind.ObjectMapper;
import org.nd4j.shade.jackson.databind.node.ObjectNode;

/**
 * Every Keras GroupNormalization config value the import cannot honour fails it with an exception that names the
 * layer, the value and the rule. Each case edits one value of a fixture's config (Conv2D with 8 channels, channels
 * last, then GroupNormalization 'gn').
 */
class KerasConfigErrorsTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path temp;

    @BeforeAll
    static void register() {
        KerasGroupNormalization.register();
    }

    static Stream<Arguments> badValues() {
        return Stream.of(
                Arguments.of("axis", "2", InvalidKerasConfigurationException.class,
                        "axis 2 of a rank-4 input is not supported"),
                Arguments.of("axis", "1", InvalidKerasConfigurationException.class,
                        "axis 1 is axis 1 (channels_first), but DL4J imported this layer's input as NHWC"),
                Arguments.of("axis", "[3]", InvalidKerasConfigurationException.class, "axis must be an integer"),
                Arguments.of("groups", "0", InvalidKerasConfigurationException.class,
                        "groups must be > 0, or -1 for one channel per group, got 0"),
                Arguments.of("groups", "3", InvalidKerasConfigurationException.class,
                        "8 channels are not divisible by 3 groups"),
                Arguments.of("groups", "2.5", InvalidKerasConfigurationException.class,
                        "groups must be an integer, got 2.5"),
                Arguments.of("epsilon", "0.0", InvalidKerasConfigurationException.class,
                        "eps must be a finite number > 0, got 0.0"),
                Arguments.of("gamma_regularizer", "{\"class_name\": \"OrthogonalRegularizer\", \"config\": "
                                + "{\"factor\": 0.01, \"mode\": \"rows\"}}", UnsupportedKerasConfigurationException.class,
                        "gamma_regularizer {class_name=OrthogonalRegularizer"),
                Arguments.of("beta_regularizer", "\"l2\"", UnsupportedKerasConfigurationException.class,
                        "beta_regularizer l2 is not supported; DL4J can express Keras' L1, L2 and L1L2"),
                Arguments.of("beta_constraint", "{\"class_name\": \"MaxNorm\", \"config\": {\"max_value\": 2, "
                                + "\"axis\": 0}}", UnsupportedKerasConfigurationException.class,
                        "beta_constraint {class_name=MaxNorm"));
    }

    @ParameterizedTest(name = "{0} = {1}")
    @MethodSource("badValues")
    void badConfigValuesFailNamingLayerValueAndRule(String key, String value, Class<? extends Exception> type,
                                                   String message) throws Exception {
        JsonNode model = JSON.readTree(KerasImportTest.fixtures().resolve("seq_conv2d_nhwc/model.json").toFile());
        for (JsonNode layer : model.get("config").get("layers")) {
            if ("gn".equals(layer.get("config").get("name").asText())) {
                ((ObjectNode) layer.get("config")).set(key, JSON.readTree(value));
            }
        }
        File edited = temp.resolve("model.json").toFile();
        Files.writeString(edited.toPath(), JSON.writeValueAsString(model));

        Exception e = assertThrows(type, () -> KerasModelImport.importKerasSequentialConfiguration(edited.getPath()));
        assertTrue(e.getMessage().contains("GroupNormalization 'gn'"), e.getMessage());
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }
}
