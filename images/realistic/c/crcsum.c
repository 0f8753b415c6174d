/* crcsum: print the CRC-32 (IEEE 802.3, as zlib and gzip compute it) and size of files. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION "2.1.0"

static uint32_t table[256];

static void make_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}

static int sum_stream(FILE *in, uint32_t *crc_out, unsigned long long *size_out) {
    static unsigned char buf[1 << 16];
    uint32_t crc = 0xFFFFFFFFu;
    unsigned long long size = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0) {
        for (size_t i = 0; i < got; i++)
            crc = table[(crc ^ buf[i]) & 0xFF] ^ (crc >> 8);
        size += got;
    }
    if (ferror(in))
        return -1;
    *crc_out = crc ^ 0xFFFFFFFFu;
    *size_out = size;
    return 0;
}

static void usage(FILE *out) {
    fputs("Usage: crcsum [-x] [-q] [FILE...]\n"
          "\n"
          "Print the CRC-32 and byte count of each FILE (standard input when there is none,\n"
          "or for -), one line each: CRC SIZE NAME.\n"
          "\n"
          "  -x         print the CRC in hexadecimal (8 digits) instead of decimal\n"
          "  -q         print only the CRC\n"
          "  -h, --help print this help and exit\n"
          "  --version  print the version and exit\n",
          out);
}

int main(int argc, char **argv) {
    int hex = 0, quiet = 0, status = 0, files = 0, i;
    make_table();
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { i++; break; }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        if (strcmp(a, "--version") == 0) { printf("crcsum %s\n", VERSION); return 0; }
        if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "crcsum: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        for (const char *p = a + 1; *p; p++) {
            if (*p == 'x') hex = 1;
            else if (*p == 'q') quiet = 1;
            else {
                fprintf(stderr, "crcsum: unknown option '-%c'\n", *p);
                usage(stderr);
                return 2;
            }
        }
    }
    for (; i < argc || files == 0; i++, files++) {
        const char *name = i < argc ? argv[i] : "-";
        FILE *in = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
        uint32_t crc;
        unsigned long long size;
        if (in == NULL) {
            fprintf(stderr, "crcsum: %s: %s\n", name, strerror(errno));
            status = 1;
            if (i >= argc) break;
            continue;
        }
        if (sum_stream(in, &crc, &size) != 0) {
            fprintf(stderr, "crcsum: %s: %s\n", name, strerror(errno));
            status = 1;
        } else if (quiet) {
            printf(hex ? "%08x\n" : "%u\n", (unsigned)crc);
        } else {
            printf(hex ? "%08x %llu %s\n" : "%u %llu %s\n", (unsigned)crc, size, name);
        }
        if (in != stdin) fclose(in);
        if (i >= argc) break;
    }
    return status;
}
