//go:build tools

// Package tools is empty: recipe.sh builds the recipe's own main package
// (./gateway), whose imports go.sum covers.
package tools
