#!/usr/bin/env python3
"""Chat-register prompts for draft-adapter self-distillation (adapters/README.md).

Builds varied user instructions in SmolLM2-Instruct's chat template
("<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n") from the same
Debian files as the raw-text corpus (adapters/manifest.tsv, adapter_data.py):
Python functions of the standard library (explain / add type hints / add a
docstring / find bugs), README paragraphs (summarise / explain / questions),
and fixed lists of programming tasks, story topics and concepts.

Deterministic (--seed). Held out (--heldout): snippets and paragraphs from the
manifest's held-out files only, and every 10th task / topic / concept; the
training prompts never use those.

Writes OUT/train.jsonl and OUT/heldout.jsonl, one {"id", "kind", "prompt"}
per line (prompt = the full chat-formatted text, ending in the assistant
header). tools/train/chat_generate.py turns them into token sequences.
"""
import argparse
import ast
import gzip
import json
import os
import random

TASKS = """reverses a string
checks whether a number is prime
returns the n-th Fibonacci number
counts the vowels in a string
removes duplicates from a list while keeping the order
merges two sorted lists into one sorted list
computes the factorial of a number
checks whether a string is a palindrome
finds the largest element in a list
flattens a nested list
counts how often each word occurs in a text
converts Celsius to Fahrenheit
reads a CSV file and returns its rows as dictionaries
computes the average of a list of numbers
returns the median of a list
sorts a list of dictionaries by a given key
checks whether two strings are anagrams
finds the greatest common divisor of two numbers
converts a decimal number to binary
capitalizes the first letter of every word in a sentence
validates an email address with a regular expression
returns the common elements of two lists
implements binary search on a sorted list
generates all permutations of a string
computes the sum of the digits of an integer
finds the longest word in a sentence
checks whether a year is a leap year
transposes a matrix given as a list of lists
rotates a list by k positions
implements bubble sort
implements quicksort
implements merge sort
counts the lines in a text file
returns the second largest number in a list
splits a list into chunks of size n
checks whether parentheses in a string are balanced
converts a Roman numeral to an integer
converts an integer to a Roman numeral
returns the prime factors of a number
computes the power set of a list
removes all whitespace from a string
finds the first non-repeating character in a string
computes the dot product of two vectors
multiplies two matrices
implements a stack class with push and pop
implements a queue using two stacks
implements a simple linked list
computes the Levenshtein distance between two strings
returns the n most common elements of a list
groups a list of words by their first letter
parses a date string in the format YYYY-MM-DD
returns the number of days between two dates
downloads a web page and returns its title
lists all files in a directory recursively
finds files with a given extension in a directory
computes the SHA-256 hash of a file
retries a function call up to three times on exception
measures how long a function takes to run
caches the results of an expensive function
reads a JSON file and prints its keys
writes a list of dictionaries to a CSV file
converts a string to snake_case
converts a snake_case string to camelCase
truncates a string to a maximum length with an ellipsis
checks whether a list is sorted
finds the missing number in a list from 1 to n
returns the intersection of two dictionaries
inverts a dictionary
deep-merges two dictionaries
counts the set bits in an integer
checks whether a number is a power of two
generates a random password
shuffles a list without using random.shuffle
returns the running total of a list
computes a moving average over a window
finds all pairs in a list that sum to a target
returns the longest common prefix of a list of strings
checks whether a string contains only digits
formats a number of bytes as a human-readable size
parses command-line arguments for a file name and a verbose flag
logs messages to a file with timestamps
implements a simple LRU cache
computes the area of a circle given its radius
solves a quadratic equation
returns the distance between two points
checks whether a point lies inside a rectangle
simulates rolling two dice
draws a text histogram of a list of numbers
counts the words in a file
replaces all occurrences of a word in a file
finds the mode of a list
computes compound interest
converts a list of tuples into a dictionary
zips three lists together
validates an IPv4 address
extracts all URLs from a text
reverses the words in a sentence
returns every other element of a list
computes the cumulative product of a list
checks whether a sentence is a pangram""".split("\n")

TOPICS = """a robot who learns to paint
a lighthouse keeper on a stormy night
a cat who becomes the mayor of a small town
a programmer who finds a bug in the universe
a child who plants a magic seed
a dragon afraid of the dark
two friends lost in a forest
a time traveler stuck in 1850
a detective solving a mystery in a library
a baker who opens a shop on the moon
an old fisherman and a talking fish
a girl who can speak to birds
a spaceship crew discovering a new planet
a village that forgets its name
a musician who loses his voice
a dog waiting for its owner at the station
a scientist who shrinks herself
a king who wants to be a farmer
a computer that writes poems
a snowman who wants to see summer
a river that changes direction
a student on the first day of school
a grandmother's secret recipe
a city where it always rains
a lost key that opens every door
a penguin who wants to fly
a train that never stops
a gardener who grows stars
a knight who hates fighting
a book that writes itself""".split("\n")

CONCEPTS = """recursion
a hash table
object-oriented programming
a Python decorator
a generator in Python
the difference between a list and a tuple
Big O notation
a linked list
version control with git
an API
a database index
the TCP/IP model
encryption
a compiler
an operating system
virtual memory
a race condition
unit testing
machine learning
a neural network
photosynthesis
gravity
inflation in economics
the water cycle
climate change
DNS
HTTP
a pointer in C
garbage collection
a regular expression
a closure
dynamic programming
a binary search tree
the command line
environment variables
a file system
a process and a thread
cloud computing
a REST API
JSON
open source software
a software license
a man page
shell scripting
a package manager
the Linux kernel
a virtual machine
caching
a mutex
exceptions in Python""".split("\n")


def chat(user):
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", errors="replace") as f:
                return f.read()
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def functions(path):
    """top-level or method function sources of 4..28 lines"""
    src = read_text(path)
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return []
    lines = src.split("\n")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            n = node.end_lineno - node.lineno + 1
            if 4 <= n <= 28:
                body = lines[node.lineno - 1:node.end_lineno]
                ind = len(body[0]) - len(body[0].lstrip())
                out.append("\n".join(l[ind:] for l in body))
    return out


def paragraphs(path):
    text = read_text(path)
    out = []
    for p in text.split("\n\n"):
        p = " ".join(p.split())
        if 200 <= len(p) <= 900 and sum(c.isalpha() for c in p) > 0.7 * len(p):
            out.append(p)
    return out


def build(manifest, split, rng, n_code, n_prose, pick):
    files = [l.rstrip("\n").split("\t") for l in open(manifest) if l.strip()]
    files = [f for f in files if f[0] == split]
    funcs, paras = [], []
    for _, cat, path, _ in files:
        if cat == "code/python":
            funcs += functions(path)
        elif cat.startswith("prose/readme") or cat.startswith("prose/license"):
            paras += paragraphs(path)
    rng.shuffle(funcs)
    rng.shuffle(paras)
    out = []
    code_forms = [
        "Explain what this Python function does:\n```python\n{}\n```",
        "Rewrite this function with type hints:\n```python\n{}\n```",
        "Add a docstring to this function:\n```python\n{}\n```",
        "Is there a bug in this code? Explain briefly.\n```python\n{}\n```",
        "What does this code do, step by step?\n\n{}",
    ]
    for i, f in enumerate(funcs[:n_code]):
        out.append(("code", code_forms[i % len(code_forms)].format(f)))
    prose_forms = [
        "Summarise this text:\n\n{}",
        "Explain this in simple words:\n\n{}",
        "Write three questions about this text:\n\n{}",
        "Summarise in one sentence: {}",
    ]
    for i, p in enumerate(paras[:n_prose]):
        out.append(("prose", prose_forms[i % len(prose_forms)].format(p)))
    tasks, topics, concepts = pick(TASKS), pick(TOPICS), pick(CONCEPTS)
    for i, t in enumerate(tasks):
        form = ["Write a Python function that {}.", "Write a Python function that {}, with a short example.",
                "How do I write a function that {} in Python?"][i % 3]
        out.append(("task", form.format(t)))
    for i, t in enumerate(topics):
        form = ["Write a short story about {}.", "Tell me a short story about {}."][i % 2]
        out.append(("story", form.format(t)))
    for i, c in enumerate(concepts):
        form = ["Explain {} simply.", "What is {}? Explain it to a beginner.", "Explain {} with an example."][i % 3]
        out.append(("concept", form.format(c)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default="adapters/manifest.tsv")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--code", type=int, default=90, help="function prompts (training)")
    ap.add_argument("--prose", type=int, default=70, help="paragraph prompts (training)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    train = build(a.manifest, "train", rng, a.code, a.prose, lambda xs: [x for i, x in enumerate(xs) if i % 10 != 9])
    held = build(a.manifest, "heldout", rng, max(1, a.code // 8), max(1, a.prose // 8),
                 lambda xs: [x for i, x in enumerate(xs) if i % 10 == 9])
    os.makedirs(a.out, exist_ok=True)
    for name, rows in (("train", train), ("heldout", held)):
        rng.shuffle(rows)
        with open(os.path.join(a.out, name + ".jsonl"), "w") as f:
            for i, (kind, p) in enumerate(rows):
                f.write(json.dumps({"id": f"{name}-{i:04d}", "kind": kind, "prompt": chat(p)}) + "\n")
        kinds = {}
        for k, _ in rows:
            kinds[k] = kinds.get(k, 0) + 1
        print(f"{name}: {len(rows)} prompts {kinds}")


if __name__ == "__main__":
    main()
