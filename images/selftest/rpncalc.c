/*
 * rpncalc: a small reverse-Polish-notation integer calculator.
 *
 * Reference implementation of the pytest-programbench self-test task. The task image ships only the
 * compiled binary and README.md; the hidden tests in the plugin's selftest_task/ data check the
 * behaviour described there.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION "1.0.0"
#define STACK_MAX 256
#define EX_USAGE 64

static long long stack[STACK_MAX];
static int depth;
static const char *err;
static char errbuf[160];

static void usage(FILE *out) {
    fputs("usage: rpncalc [-s] [--] [TOKEN...]\n"
          "       rpncalc --help | --version\n"
          "\n"
          "Evaluate TOKENs as a reverse-Polish expression and print the top of the stack.\n"
          "Without TOKENs, evaluate each line of standard input as one expression.\n"
          "\n"
          "options:\n"
          "  -s, --stack  print the whole stack, bottom first, instead of the top\n"
          "  --help       show this help and exit\n"
          "  --version    show the version and exit\n"
          "\n"
          "operators: + - * x / % ^ neg abs dup swap drop sum\n",
          out);
}

static int push(long long v) {
    if (depth == STACK_MAX) {
        err = "stack overflow";
        return -1;
    }
    stack[depth++] = v;
    return 0;
}

static int need(int n) {
    if (depth < n) {
        err = "stack underflow";
        return -1;
    }
    return 0;
}

static int is_number(const char *tok) {
    const char *p = tok;
    if (*p == '-' || *p == '+')
        p++;
    if (!*p)
        return 0;
    for (; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

static int binary(const char *op) {
    long long a, b, r = 0;
    if (need(2))
        return -1;
    b = stack[--depth];
    a = stack[--depth];
    switch (op[0]) {
    case '+':
        if (__builtin_add_overflow(a, b, &r))
            goto overflow;
        break;
    case '-':
        if (__builtin_sub_overflow(a, b, &r))
            goto overflow;
        break;
    case '*':
    case 'x':
        if (__builtin_mul_overflow(a, b, &r))
            goto overflow;
        break;
    case '/':
    case '%':
        if (b == 0) {
            err = "division by zero";
            return -1;
        }
        if (a == LLONG_MIN && b == -1)
            goto overflow;
        r = op[0] == '/' ? a / b : a % b;
        break;
    case '^':
        if (b < 0) {
            err = "negative exponent";
            return -1;
        }
        r = 1;
        while (b-- > 0)
            if (__builtin_mul_overflow(r, a, &r))
                goto overflow;
        break;
    }
    return push(r);
overflow:
    err = "integer overflow";
    return -1;
}

static int apply(const char *tok) {
    if (is_number(tok)) {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(tok, &end, 10);
        if (errno == ERANGE) {
            err = "integer overflow";
            return -1;
        }
        return push(v);
    }
    if (strlen(tok) == 1 && strchr("+-*x/%^", tok[0]))
        return binary(tok);
    if (!strcmp(tok, "neg") || !strcmp(tok, "abs")) {
        if (need(1))
            return -1;
        if (stack[depth - 1] == LLONG_MIN) {
            err = "integer overflow";
            return -1;
        }
        if (tok[0] == 'n' || stack[depth - 1] < 0)
            stack[depth - 1] = -stack[depth - 1];
        return 0;
    }
    if (!strcmp(tok, "dup")) {
        if (need(1))
            return -1;
        return push(stack[depth - 1]);
    }
    if (!strcmp(tok, "swap")) {
        long long t;
        if (need(2))
            return -1;
        t = stack[depth - 1];
        stack[depth - 1] = stack[depth - 2];
        stack[depth - 2] = t;
        return 0;
    }
    if (!strcmp(tok, "drop")) {
        if (need(1))
            return -1;
        depth--;
        return 0;
    }
    if (!strcmp(tok, "sum")) {
        long long total = 0;
        while (depth > 0)
            if (__builtin_add_overflow(total, stack[--depth], &total)) {
                err = "integer overflow";
                return -1;
            }
        return push(total);
    }
    snprintf(errbuf, sizeof errbuf, "unknown token '%.100s'", tok);
    err = errbuf;
    return -1;
}

static int print_result(int whole_stack) {
    if (depth == 0) {
        err = "empty stack";
        return -1;
    }
    if (whole_stack) {
        for (int i = 0; i < depth; i++)
            printf(i ? " %lld" : "%lld", stack[i]);
        putchar('\n');
    } else {
        printf("%lld\n", stack[depth - 1]);
    }
    return 0;
}

static void report(long line) {
    if (line > 0)
        fprintf(stderr, "rpncalc: line %ld: %s\n", line, err);
    else
        fprintf(stderr, "rpncalc: %s\n", err);
}

int main(int argc, char **argv) {
    int whole_stack = 0;
    int i = 1;

    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        /* "-" is the subtraction operator and "-3" a number, so only "-<letter>..." is an option. */
        if (a[0] != '-' || !(isalpha((unsigned char)a[1]) || a[1] == '-'))
            break;
        if (!strcmp(a, "-s") || !strcmp(a, "--stack")) {
            whole_stack = 1;
        } else if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            puts("rpncalc " VERSION);
            return 0;
        } else {
            fprintf(stderr, "rpncalc: unknown option '%s'\n", a);
            usage(stderr);
            return EX_USAGE;
        }
    }

    if (i < argc) {
        for (; i < argc; i++)
            if (apply(argv[i])) {
                report(0);
                return 2;
            }
        if (print_result(whole_stack)) {
            report(0);
            return 2;
        }
        return 0;
    }

    char line[4096];
    long lineno = 0;
    while (fgets(line, sizeof line, stdin)) {
        char *hash = strchr(line, '#');
        char *tok;
        int ntok = 0;
        lineno++;
        if (hash)
            *hash = '\0';
        depth = 0;
        for (tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
            ntok++;
            if (apply(tok)) {
                report(lineno);
                return 2;
            }
        }
        if (ntok == 0)
            continue;
        if (print_result(whole_stack)) {
            report(lineno);
            return 2;
        }
    }
    return 0;
}
