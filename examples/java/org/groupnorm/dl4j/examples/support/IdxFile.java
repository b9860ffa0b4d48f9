package org.groupnorm.dl4j.examples.support;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;

/**
 * Reads one file in the idx format of MNIST and Fashion-MNIST (raw or gzipped): a magic number naming the element
 * type and rank, the size of each dimension, then the unsigned bytes. Every check failure names the file and says
 * what was expected, instead of surfacing later as an index error inside an iterator.
 */
public final class IdxFile {

    /** Magic numbers of unsigned-byte idx files: 0x0801 for a vector (labels), 0x0803 for a 3-d array (images). */
    private static final int UNSIGNED_BYTE_TYPE = 0x08;

    private final Path path;
    private final int[] dimensions;
    private final byte[] values;

    private IdxFile(Path path, int[] dimensions, byte[] values) {
        this.path = path;
        this.dimensions = dimensions;
        this.values = values;
    }

    /**
     * Reads an unsigned-byte idx file of the given rank.
     *
     * @throws DataFileException if the file is missing, unreadable, not idx, of another rank, or shorter or longer
     *                           than its header says
     */
    public static IdxFile read(Path path, int expectedRank) {
        if (!Files.isRegularFile(path)) {
            throw new DataFileException(path, "file not found");
        }
        try (InputStream raw = new BufferedInputStream(Files.newInputStream(path));
             DataInputStream in = new DataInputStream(maybeGunzip(raw))) {
            int magic = in.readInt();
            int type = (magic >>> 8) & 0xFF;
            int rank = magic & 0xFF;
            if ((magic >>> 16) != 0 || type != UNSIGNED_BYTE_TYPE || rank != expectedRank) {
                throw new DataFileException(path, String.format("expected an idx file of unsigned bytes with %d "
                        + "dimension(s) (magic 0x%08X), found magic 0x%08X", expectedRank,
                        (UNSIGNED_BYTE_TYPE << 8) | expectedRank, magic));
            }
            int[] dimensions = new int[rank];
            long count = 1;
            for (int d = 0; d < rank; d++) {
                dimensions[d] = in.readInt();
                if (dimensions[d] <= 0) {
                    throw new DataFileException(path, "dimension " + d + " has size " + dimensions[d]);
                }
                count *= dimensions[d];
            }
            if (count > Integer.MAX_VALUE - 8) {
                throw new DataFileException(path, "header declares " + count + " values, too many to load");
            }
            byte[] values = new byte[(int) count];
            try {
                in.readFully(values);
            } catch (EOFException e) {
                throw new DataFileException(path, "truncated: the header declares " + count + " values "
                        + describe(dimensions) + " but the file ends before them");
            }
            if (in.read() != -1) {
                throw new DataFileException(path, "longer than its header declares (" + count + " values "
                        + describe(dimensions) + ")");
            }
            return new IdxFile(path, dimensions, values);
        } catch (DataFileException e) {
            throw e;
        } catch (EOFException e) {
            throw new DataFileException(path, "truncated inside the idx header");
        } catch (IOException e) {
            throw new DataFileException(path, "cannot be read: " + e.getMessage());
        }
    }

    /** Writes an unsigned-byte idx file, gzipped when the name ends in .gz (used to build the embedded subset). */
    public static void write(Path path, int[] dimensions, byte[] values) throws IOException {
        OutputStream file = Files.newOutputStream(path);
        try (DataOutputStream out = new DataOutputStream(path.toString().endsWith(".gz")
                ? new GZIPOutputStream(file) : new BufferedOutputStream(file))) {
            out.writeInt((UNSIGNED_BYTE_TYPE << 8) | dimensions.length);
            for (int size : dimensions) {
                out.writeInt(size);
            }
            out.write(values);
        }
    }

    private static InputStream maybeGunzip(InputStream in) throws IOException {
        in.mark(2);
        int first = in.read();
        int second = in.read();
        in.reset();
        boolean gzip = first == 0x1f && second == 0x8b;
        return gzip ? new GZIPInputStream(in, 1 << 16) : in;
    }

    private static String describe(int[] dimensions) {
        return Arrays.toString(dimensions);
    }

    public Path path() {
        return path;
    }

    public int[] dimensions() {
        return dimensions.clone();
    }

    /** Value at a flat index, as 0..255. */
    public int unsigned(int index) {
        return values[index] & 0xFF;
    }

    /** The raw bytes (not copied). */
    byte[] bytes() {
        return values;
    }

    /** A data file that is missing or not what it should be; the message names the file. */
    public static final class DataFileException extends RuntimeException {
        public DataFileException(Path path, String problem) {
            super(path + ": " + problem);
        }
    }
}
