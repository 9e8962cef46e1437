import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { LockErrorFilter } from './lock-error.filter';

/** Marks a class as a WebSocket gateway (`@WebSocketGateway`); the value of @nestjs/websockets' GATEWAY_METADATA. */
const GATEWAY_METADATA = 'websockets:is_gateway';

/**
 * Puts `LockErrorFilter` on the WebSocket gateways of the app. Nest applies no global filter to
 * gateways (their filter context has no global filters, whatever `APP_FILTER` or
 * `useGlobalFilters` says), so the module adds its filter to each gateway class as if it were the
 * first of the class's `@UseFilters`: filters of the gateway's own, on the class or a handler,
 * still win. Nest reads those filters when it connects the gateways, during `app.init()`, after
 * every provider was made and before the bootstrap hooks; at bootstrap the filter is taken off
 * the classes again, so that another app in the same process sees them as they were.
 * Needs no @nestjs/websockets: without it there is no gateway.
 */
@Injectable()
export class LockGatewayFilters implements OnApplicationBootstrap {
  private readonly filter = new LockErrorFilter();
  /** The gateway classes the filter was put on, each with whether it had filters of its own before. */
  private readonly gateways = new Map<object, boolean>();

  constructor(modules: ModulesContainer) {
    for (const module of modules.values()) {
      for (const wrapper of module.providers.values()) {
        const gateway = wrapper.metatype as object | null | undefined;
        if (typeof gateway !== 'function' || wrapper.isNotMetatype || this.gateways.has(gateway)) continue;
        if (!Reflect.hasMetadata(GATEWAY_METADATA, gateway)) continue;
        const filters = (Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, gateway) as unknown[] | undefined) ?? [];
        this.gateways.set(gateway, Reflect.hasOwnMetadata(EXCEPTION_FILTERS_METADATA, gateway));
        // Nest tries a class's filters last one first: the first place is the one tried last.
        Reflect.defineMetadata(EXCEPTION_FILTERS_METADATA, [this.filter, ...filters], gateway);
      }
    }
  }

  onApplicationBootstrap(): void {
    for (const [gateway, hadOwn] of this.gateways) {
      const filters = (
        (Reflect.getOwnMetadata(EXCEPTION_FILTERS_METADATA, gateway) as unknown[] | undefined) ?? []
      ).filter((filter) => filter !== this.filter);
      const inherited =
        (Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, Object.getPrototypeOf(gateway) as object) as
          unknown[] | undefined) ?? [];
      const onlyInherited =
        filters.length === inherited.length && filters.every((filter, i) => filter === inherited[i]);
      if (!hadOwn && onlyInherited) Reflect.deleteMetadata(EXCEPTION_FILTERS_METADATA, gateway);
      else Reflect.defineMetadata(EXCEPTION_FILTERS_METADATA, filters, gateway);
    }
    this.gateways.clear();
  }
}
