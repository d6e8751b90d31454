/** Error messages of the registries, in one place so they read alike. */
export const registryMessages = {
  notFound: (kind: string, name: string, known: readonly string[]) =>
    `No ${kind} named "${name}"${known.length ? `; known: ${known.join(', ')}` : '; none are registered'}. Names come from named policies (ResilienceModule.forRoot({ policies })) and, for inline options, from "Class.method".`,
};
