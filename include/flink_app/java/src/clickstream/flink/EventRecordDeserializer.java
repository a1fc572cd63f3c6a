package clickstream.flink;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.DeserializationFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectReader;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.SerializationFeature;

import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.Month;
import java.time.Year;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * Turns one message into the row of {@link EventRecordFormatFactory}, with one JSON parse.
 *
 * <p>Same values as the SQL it replaces, by construction:
 *
 * <ul>
 *   <li>{@code record}: {@code StringData.fromBytes}, as the 'raw' format does for UTF-8;
 *   <li>a member column: Flink's JSON_VALUE reads the record's text with Jackson (an ObjectMapper configured as
 *       in {@code SqlJsonUtils}: floats as BigDecimal) into Java objects, takes the member in lax mode (NULL when
 *       the record is not an object, does not parse, or the member is missing, JSON null, an object or an array)
 *       and returns {@code String.valueOf} of it. This class does the same parse once for all members;
 *   <li>{@code one_json_object}: the record starts with '{' after JSON whitespace, and its text is one JSON value with
 *       nothing but whitespace after it (the SQL checked the same by parsing the record inside an array followed
 *       by an end marker). Content after the first value does not change the members, as with JSON_VALUE, which
 *       ignores it.
 * </ul>
 */
public final class EventRecordDeserializer implements DeserializationSchema<RowData> {

    private static final long serialVersionUID = 1L;

    /** The column that says whether the record is one JSON object alone. */
    public static final String JSON_OBJECT_COLUMN = "one_json_object";
    /** The column that holds the record's text. */
    public static final String RECORD_COLUMN = "record";
    /** The column with the epoch milliseconds of a plain wire timestamp (see {@link #wireTimeMs}). */
    public static final String WIRE_TIME_MS_COLUMN = "client_timestamp_ms";
    /** The member {@link #WIRE_TIME_MS_COLUMN} reads. */
    private static final String TIMESTAMP_MEMBER = "client_timestamp";
    /** The earliest year {@link #wireTimeMs} reads (older instants are left to the SQL, whatever its calendar). */
    private static final int FIRST_YEAR = 1970;

    private static final ObjectMapper MAPPER =
            new ObjectMapper(new JsonFactory())
                    .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
                    .configure(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS, true);
    private static final ObjectReader READER = MAPPER.reader().forType(Object.class);

    private static final int RECORD = 0;
    private static final int JSON_OBJECT = 1;
    private static final int MEMBER = 2;
    private static final int WIRE_TIME_MS = 3;

    private final String[] columns;
    private final int[] kinds;
    private final TypeInformation<RowData> producedType;

    public EventRecordDeserializer(List<String> columnNames, TypeInformation<RowData> producedType) {
        this.columns = columnNames.toArray(new String[0]);
        this.kinds = new int[columns.length];
        for (int i = 0; i < columns.length; i++) {
            kinds[i] =
                    RECORD_COLUMN.equals(columns[i])
                            ? RECORD
                            : JSON_OBJECT_COLUMN.equals(columns[i])
                                    ? JSON_OBJECT
                                    : WIRE_TIME_MS_COLUMN.equals(columns[i]) ? WIRE_TIME_MS : MEMBER;
        }
        this.producedType = producedType;
    }

    @Override
    public RowData deserialize(byte[] message) {
        GenericRowData row = new GenericRowData(columns.length);
        if (message == null) {
            return row;
        }
        StringData record = StringData.fromBytes(message);
        String text = record.toString();
        Object root = null;
        boolean alone = false;
        try (JsonParser parser = MAPPER.getFactory().createParser(text)) {
            root = READER.readValue(parser);
            alone = startsWithBrace(text) && parser.nextToken() == null;
        } catch (Exception e) {
            alone = false; // root keeps the first value if only what follows it is bad (as JSON_VALUE)
        }
        Map<?, ?> object = root instanceof Map ? (Map<?, ?>) root : null;
        for (int i = 0; i < columns.length; i++) {
            switch (kinds[i]) {
                case RECORD:
                    row.setField(i, record);
                    break;
                case JSON_OBJECT:
                    row.setField(i, alone);
                    break;
                case WIRE_TIME_MS:
                    row.setField(i, object == null ? null : wireTimeMs(object.get(TIMESTAMP_MEMBER)));
                    break;
                default:
                    row.setField(i, object == null ? null : scalar(object.get(columns[i])));
            }
        }
        return row;
    }

    /** JSON_VALUE's STRING result for a member's Java value: NULL for null, objects and arrays. */
    private static StringData scalar(Object value) {
        if (value == null || value instanceof Map || value instanceof Collection) {
            return null;
        }
        return utf8(String.valueOf(value));
    }

    /**
     * The text as the UTF-8 bytes {@code StringData.fromString} would hold once encoded. A string made with
     * fromString is encoded by Flink's per-character encoder where the job first copies the row; ASCII text
     * (every member of a well-formed event) is copied as bytes here instead. Other text keeps Flink's own
     * encoder, so surrogates are encoded as before.
     */
    private static StringData utf8(String text) {
        for (int i = 0; i < text.length(); i++) {
            if (text.charAt(i) >= 0x80) {
                return StringData.fromString(text);
            }
        }
        return StringData.fromBytes(text.getBytes(StandardCharsets.US_ASCII));
    }

    /**
     * Epoch milliseconds of a timestamp in the wire format's plainest form: "yyyy-MM-ddTHH:mm:ss.SSSZ" in ASCII
     * digits, a year from {@value #FIRST_YEAR} to 9999, a real date and a time of day without a leap second; null
     * for any other value, which the SQL then checks and parses from its text as before. For such a text the
     * SQL's checks give exactly this: it parses to this instant (UTC, the proleptic Gregorian calendar, which is
     * the Gregorian one from 1970) and formats back to itself, so the job need not parse or format it per event.
     */
    static Long wireTimeMs(Object value) {
        if (!(value instanceof String)) {
            return null;
        }
        String s = (String) value;
        if (s.length() != 24
                || s.charAt(4) != '-'
                || s.charAt(7) != '-'
                || s.charAt(10) != 'T'
                || s.charAt(13) != ':'
                || s.charAt(16) != ':'
                || s.charAt(19) != '.'
                || s.charAt(23) != 'Z') {
            return null;
        }
        int year = digits(s, 0, 4);
        int month = digits(s, 5, 2);
        int day = digits(s, 8, 2);
        int hour = digits(s, 11, 2);
        int minute = digits(s, 14, 2);
        int second = digits(s, 17, 2);
        int milli = digits(s, 20, 3);
        if ((year | month | day | hour | minute | second | milli) < 0
                || year < FIRST_YEAR
                || month < 1
                || month > 12
                || day < 1
                || day > Month.of(month).length(Year.isLeap(year))
                || hour > 23
                || minute > 59
                || second > 59) {
            return null;
        }
        long days = LocalDate.of(year, month, day).toEpochDay();
        return ((days * 24 + hour) * 60 + minute) * 60_000L + second * 1000L + milli;
    }

    /** The decimal value of {@code count} ASCII digits from {@code from}; -1 when one is not an ASCII digit. */
    private static int digits(String s, int from, int count) {
        int value = 0;
        for (int i = from; i < from + count; i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            value = value * 10 + (c - '0');
        }
        return value;
    }

    /** The SQL's REGEXP '^[ \t\n\r]*\{'. */
    private static boolean startsWithBrace(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '{') {
                return true;
            }
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return false;
            }
        }
        return false;
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
