package main

import (
	"image"
	"image/color"
	"strings"
)

// canvas is a tiny rasteriser for plots: clipped pixels, rectangles,
// Bresenham lines and a 3x5 bitmap font.
type canvas struct {
	img *image.RGBA
}

func newCanvas(w, h int, bg color.RGBA) *canvas {
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	c.fillRect(0, 0, w, h, bg)
	return c
}

func (c *canvas) set(x, y int, col color.RGBA) {
	if (image.Point{x, y}).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

// fillRect fills [x0, x1) x [y0, y1).
func (c *canvas) fillRect(x0, y0, x1, y1 int, col color.RGBA) {
	r := image.Rect(x0, y0, x1, y1).Intersect(c.img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c.img.SetRGBA(x, y, col)
		}
	}
}

// strokeRect draws the one-pixel outline of [x0, x1) x [y0, y1).
func (c *canvas) strokeRect(x0, y0, x1, y1 int, col color.RGBA) {
	c.line(x0, y0, x1-1, y0, col)
	c.line(x0, y1-1, x1-1, y1-1, col)
	c.line(x0, y0, x0, y1-1, col)
	c.line(x1-1, y0, x1-1, y1-1, col)
}

// line draws from (x0, y0) to (x1, y1), both ends included (Bresenham).
func (c *canvas) line(x0, y0, x1, y1 int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		c.set(x0, y0, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

// dashedHLine draws a horizontal line at y from x0 to x1 in dashes.
func (c *canvas) dashedHLine(x0, x1, y int, on, off int, col color.RGBA) {
	for x := x0; x <= x1; x++ {
		if (x-x0)%(on+off) < on {
			c.set(x, y, col)
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// Glyphs of the 3x5 font, top row first; '#' is ink. Lower case prints as
// upper case; anything else missing prints as '?'.
var glyphs = map[rune][5]string{
	'A': {".#.", "#.#", "###", "#.#", "#.#"},
	'B': {"##.", "#.#", "##.", "#.#", "##."},
	'C': {".##", "#..", "#..", "#..", ".##"},
	'D': {"##.", "#.#", "#.#", "#.#", "##."},
	'E': {"###", "#..", "##.", "#..", "###"},
	'F': {"###", "#..", "##.", "#..", "#.."},
	'G': {".##", "#..", "#.#", "#.#", ".##"},
	'H': {"#.#", "#.#", "###", "#.#", "#.#"},
	'I': {"###", ".#.", ".#.", ".#.", "###"},
	'J': {"..#", "..#", "..#", "#.#", ".#."},
	'K': {"#.#", "#.#", "##.", "#.#", "#.#"},
	'L': {"#..", "#..", "#..", "#..", "###"},
	'M': {"#.#", "###", "#.#", "#.#", "#.#"},
	'N': {"##.", "#.#", "#.#", "#.#", "#.#"},
	'O': {".#.", "#.#", "#.#", "#.#", ".#."},
	'P': {"##.", "#.#", "##.", "#..", "#.."},
	'Q': {".#.", "#.#", "#.#", "##.", ".##"},
	'R': {"##.", "#.#", "##.", "#.#", "#.#"},
	'S': {".##", "#..", ".#.", "..#", "##."},
	'T': {"###", ".#.", ".#.", ".#.", ".#."},
	'U': {"#.#", "#.#", "#.#", "#.#", "###"},
	'V': {"#.#", "#.#", "#.#", "#.#", ".#."},
	'W': {"#.#", "#.#", "###", "###", "#.#"},
	'X': {"#.#", "#.#", ".#.", "#.#", "#.#"},
	'Y': {"#.#", "#.#", ".#.", ".#.", ".#."},
	'Z': {"###", "..#", ".#.", "#..", "###"},
	'0': {"###", "#.#", "#.#", "#.#", "###"},
	'1': {".#.", "##.", ".#.", ".#.", "###"},
	'2': {"##.", "..#", ".#.", "#..", "###"},
	'3': {"##.", "..#", ".#.", "..#", "##."},
	'4': {"#.#", "#.#", "###", "..#", "..#"},
	'5': {"###", "#..", "##.", "..#", "##."},
	'6': {".##", "#..", "###", "#.#", "###"},
	'7': {"###", "..#", ".#.", ".#.", ".#."},
	'8': {"###", "#.#", "###", "#.#", "###"},
	'9': {"###", "#.#", "###", "..#", "##."},
	'.': {"...", "...", "...", "...", ".#."},
	',': {"...", "...", "...", ".#.", "#.."},
	':': {"...", ".#.", "...", ".#.", "..."},
	'-': {"...", "...", "###", "...", "..."},
	'+': {"...", ".#.", "###", ".#.", "..."},
	'=': {"...", "###", "...", "###", "..."},
	'_': {"...", "...", "...", "...", "###"},
	'/': {"..#", "..#", ".#.", "#..", "#.."},
	'(': {".#.", "#..", "#..", "#..", ".#."},
	')': {".#.", "..#", "..#", "..#", ".#."},
	'%': {"#.#", "..#", ".#.", "#..", "#.#"},
	'?': {"##.", "..#", ".#.", "...", ".#."},
	' ': {"...", "...", "...", "...", "..."},
}

// textWidth is the width in pixels of s drawn at scale.
func textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (4*n - 1) * scale
}

// text draws s with its top-left corner at (x, y), each font pixel a
// scale x scale square, and returns the x after it.
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) int {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs['?']
		}
		for gy, row := range g {
			for gx, ink := range row {
				if ink == '#' {
					c.fillRect(x+gx*scale, y+gy*scale, x+(gx+1)*scale, y+(gy+1)*scale, col)
				}
			}
		}
		x += 4 * scale
	}
	return x
}
