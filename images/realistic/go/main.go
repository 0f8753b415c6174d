// csvstat prints per-column statistics of CSV data: count, empty, min, max, sum, mean.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

const version = "0.9.3"

const usage = `Usage: csvstat [OPTIONS] [FILE]

Print statistics of each column of CSV data read from FILE (standard input when there is
none, or for -). The first record names the columns.

Options:
  -d, --delimiter C   field separator (default ,)
  -c, --columns LIST  only these columns, by name or 1-based index, comma separated
  -j, --json          one JSON object per column instead of the table
      --help          print this help and exit
      --version       print the version and exit
`

type column struct {
	name           string
	count, empty   int
	numeric        int
	min, max, sum  float64
	nonNumeric     bool
	longest        int
}

func (c *column) add(value string) {
	if value == "" {
		c.empty++
		return
	}
	c.count++
	if len(value) > c.longest {
		c.longest = len(value)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		c.nonNumeric = true
		return
	}
	if c.numeric == 0 || f < c.min {
		c.min = f
	}
	if c.numeric == 0 || f > c.max {
		c.max = f
	}
	c.numeric++
	c.sum += f
}

func number(f float64) string {
	return strconv.FormatFloat(f, 'g', 10, 64)
}

func (c *column) cells() []string {
	if c.nonNumeric || c.numeric == 0 {
		return []string{c.name, strconv.Itoa(c.count), strconv.Itoa(c.empty), "-", "-", "-", "-", "text(" + strconv.Itoa(c.longest) + ")"}
	}
	return []string{c.name, strconv.Itoa(c.count), strconv.Itoa(c.empty), number(c.min), number(c.max),
		number(c.sum), number(c.sum / float64(c.numeric)), "number"}
}

func (c *column) json() string {
	kind := "number"
	if c.nonNumeric || c.numeric == 0 {
		kind = "text"
	}
	fields := []string{fmt.Sprintf("%q:%s", "name", strconv.Quote(c.name)), fmt.Sprintf("%q:%d", "count", c.count),
		fmt.Sprintf("%q:%d", "empty", c.empty), fmt.Sprintf("%q:%q", "type", kind)}
	if kind == "number" {
		fields = append(fields, fmt.Sprintf("%q:%s", "min", number(c.min)), fmt.Sprintf("%q:%s", "max", number(c.max)),
			fmt.Sprintf("%q:%s", "sum", number(c.sum)), fmt.Sprintf("%q:%s", "mean", number(c.sum/float64(c.numeric))))
	}
	return "{" + strings.Join(fields, ",") + "}"
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "csvstat: "+format+"\n", args...)
	os.Exit(code)
}

func selectColumns(header []string, list string) []int {
	if list == "" {
		all := make([]int, len(header))
		for i := range header {
			all[i] = i
		}
		return all
	}
	var picked []int
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.Atoi(part); err == nil {
			if n < 1 || n > len(header) {
				fail(2, "column %d out of range (1-%d)", n, len(header))
			}
			picked = append(picked, n-1)
			continue
		}
		found := -1
		for i, name := range header {
			if name == part {
				found = i
				break
			}
		}
		if found < 0 {
			fail(2, "no column named %q", part)
		}
		picked = append(picked, found)
	}
	return picked
}

func main() {
	flags := flag.NewFlagSet("csvstat", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var delimiter, columns string
	var asJSON, help, showVersion bool
	flags.StringVar(&delimiter, "d", ",", "")
	flags.StringVar(&delimiter, "delimiter", ",", "")
	flags.StringVar(&columns, "c", "", "")
	flags.StringVar(&columns, "columns", "", "")
	flags.BoolVar(&asJSON, "j", false, "")
	flags.BoolVar(&asJSON, "json", false, "")
	flags.BoolVar(&help, "help", false, "")
	flags.BoolVar(&showVersion, "version", false, "")
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage)
			return
		}
		fail(2, "%v\nTry 'csvstat --help' for more information.", err)
	}
	if help {
		fmt.Print(usage)
		return
	}
	if showVersion {
		fmt.Println("csvstat " + version)
		return
	}
	if len([]rune(delimiter)) != 1 {
		fail(2, "the delimiter must be one character, not %q", delimiter)
	}
	var input io.Reader = os.Stdin
	name := "-"
	if flags.NArg() > 1 {
		fail(2, "at most one FILE")
	}
	if flags.NArg() == 1 && flags.Arg(0) != "-" {
		name = flags.Arg(0)
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				fail(1, "%s: No such file or directory", name)
			}
			fail(1, "%s: %v", name, err)
		}
		defer f.Close()
		input = f
	}
	reader := csv.NewReader(input)
	reader.Comma = []rune(delimiter)[0]
	reader.FieldsPerRecord = -1
	reader.ReuseRecord = true
	header, err := reader.Read()
	if err == io.EOF {
		fail(1, "%s: no header record", name)
	}
	if err != nil {
		fail(1, "%s: %v", name, err)
	}
	header = append([]string(nil), header...)
	picked := selectColumns(header, columns)
	stats := make([]column, len(picked))
	for i, index := range picked {
		stats[i].name = header[index]
	}
	rows := 0
	for {
		record, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(1, "%s: %v", name, err)
		}
		rows++
		for i, index := range picked {
			value := ""
			if index < len(record) {
				value = record[index]
			}
			stats[i].add(value)
		}
	}
	if asJSON {
		for i := range stats {
			fmt.Println(stats[i].json())
		}
		return
	}
	table := [][]string{{"column", "count", "empty", "min", "max", "sum", "mean", "type"}}
	for i := range stats {
		table = append(table, stats[i].cells())
	}
	widths := make([]int, len(table[0]))
	for _, row := range table {
		for i, cell := range row {
			if len(cell) > widths[i] {
				widths[i] = len(cell)
			}
		}
	}
	for _, row := range table {
		cells := make([]string, len(row))
		for i, cell := range row {
			if i == 0 {
				cells[i] = cell + strings.Repeat(" ", widths[i]-len(cell))
			} else {
				cells[i] = strings.Repeat(" ", widths[i]-len(cell)) + cell
			}
		}
		fmt.Println(strings.TrimRight(strings.Join(cells, "  "), " "))
	}
	fmt.Printf("%d rows\n", rows)
}
