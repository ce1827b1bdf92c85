/* wordfreq.c: count the words read from standard input and print the most frequent.
 *
 *     cc -O2 -o wordfreq wordfreq.c && ./wordfreq < book.txt | head
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE 65536
#define MAX_WORD 64

struct entry {
    char word[MAX_WORD];
    unsigned long count;
    struct entry *next;
};

static struct entry *table[TABLE_SIZE];

static unsigned long hash(const char *s)
{
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h % TABLE_SIZE;
}

static void add(const char *word)
{
    unsigned long h = hash(word);
    struct entry *e;
    for (e = table[h]; e != NULL; e = e->next) {
        if (strcmp(e->word, word) == 0) {
            e->count++;
            return;
        }
    }
    e = malloc(sizeof *e);
    if (e == NULL) {
        perror("malloc");
        exit(1);
    }
    strncpy(e->word, word, MAX_WORD - 1);
    e->word[MAX_WORD - 1] = '\0';
    e->count = 1;
    e->next = table[h];
    table[h] = e;
}

static int by_count(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a;
    const struct entry *y = *(const struct entry *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(void)
{
    char word[MAX_WORD];
    size_t len = 0, n = 0, i, k = 0;
    struct entry **all, *e;
    int c;

    while ((c = getchar()) != EOF) {
        if (isalpha(c) && len < MAX_WORD - 1) {
            word[len++] = (char)tolower(c);
        } else if (len > 0) {
            word[len] = '\0';
            add(word);
            len = 0;
        }
    }
    for (i = 0; i < TABLE_SIZE; i++)
        for (e = table[i]; e != NULL; e = e->next)
            n++;
    all = malloc(n * sizeof *all);
    if (all == NULL && n > 0) {
        perror("malloc");
        return 1;
    }
    for (i = 0; i < TABLE_SIZE; i++)
        for (e = table[i]; e != NULL; e = e->next)
            all[k++] = e;
    qsort(all, n, sizeof *all, by_count);
    for (i = 0; i < n; i++)
        printf("%8lu %s\n", all[i]->count, all[i]->word);
    free(all);
    return 0;
}
