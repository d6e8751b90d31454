// The compatibility run does run on NestJS 11: the packages the tests import are the 11.x ones,
// and Nest's own packages load the very same copies (one `@nestjs/common` in the process).
import { Controller, Injectable } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nest11Dir } from './nest11.js';

const PACKAGES = ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express', '@nestjs/platform-fastify', '@nestjs/testing', '@nestjs/microservices', '@nestjs/websockets'];

describe('the NestJS 11 run', () => {
  it('resolves every @nestjs package to 11.x', async () => {
    const versions: Record<string, string> = {};
    for (const name of PACKAGES) {
      const manifest = (await import(`${name}/package.json`)) as { default: { version: string } };
      versions[name] = manifest.default.version;
    }
    console.log(`NestJS versions loaded: ${JSON.stringify(versions)}`);
    expect(Object.values(versions).map((version) => version.split('.')[0])).toEqual(PACKAGES.map(() => '11'));
  });

  it('gives Nest’s packages the same @nestjs/common the tests import', () => {
    const fromCore = createRequire(join(nest11Dir(), 'node_modules', '@nestjs', 'core', 'package.json'));
    expect(fromCore('@nestjs/common').Injectable).toBe(Injectable);
    expect(fromCore('@nestjs/common').Controller).toBe(Controller);
    expect(fromCore('@nestjs/core').NestFactory).toBe(NestFactory);
  });
});
